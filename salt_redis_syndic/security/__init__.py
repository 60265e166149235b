"""Who may do what: signing keys, payload encryption keys, the DC keyring, DC job policy, Redis ACL rules."""
