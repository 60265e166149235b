"""The estate: each DC's roster of minions, drift of file/pillar roots and git remotes, key orders from the MoM."""
