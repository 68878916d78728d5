/* hello is the benchmark's handler: it writes "Hello World\n" to stdout and
 * exits without reading its input, as the seed's example does. Built with
 * gcc -static so that dynamic loading costs nothing. */
#include <unistd.h>

int main(void) {
	static const char msg[] = "Hello World\n";
	return write(1, msg, sizeof msg - 1) == sizeof msg - 1 ? 0 : 1;
}
