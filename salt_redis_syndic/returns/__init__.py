"""Returns going up: spool -> uplink shipper, MoM collector, release barrier, confirmations, relay acks."""
