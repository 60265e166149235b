"""Redis transport: connections, the job stream and the reliable uplink queue."""
