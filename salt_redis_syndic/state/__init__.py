"""What survives a restart on one master: SQLite ledgers, the uplink spool, dead letters."""
