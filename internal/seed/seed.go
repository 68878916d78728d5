// Package seed holds, for tests, the Hello World units of the wiki page
// socketd started from: a systemd socket unit and its per-connection
// service, as a user would import them.
package seed

// SocketUnit is octoi-helloworld.socket.
const SocketUnit = `[Unit]
Description=OCTOI HelloWorld Socket for Per-Connection Servers

[Socket]
ListenStream=13063
Accept=yes

[Install]
WantedBy=sockets.target
`

// ServiceUnit is octoi-helloworld@.service.
const ServiceUnit = `[Unit]
Description=OCTOI HelloWorld Socket Per-Connection Server

[Service]
ExecStart=-` + Script + `
StandardInput=socket
StandardError=null
DynamicUser=true
`

// Script is the program ServiceUnit runs.
const Script = "/opt/helloworld.sh"
