DROP TABLE sockets;
