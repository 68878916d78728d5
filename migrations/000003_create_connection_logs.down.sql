DROP TABLE connection_logs;
