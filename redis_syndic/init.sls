# -*- coding: utf-8 -*-
# vim: ft=sls
# Deploy the Redis bridge on a salt-master (a MoM or a DC, per pillar redis_syndic:bridge:role):
# install the package into Salt's Python, render master.d/redis_syndic.conf, restart
# salt-master if anything changed. See pillar.example.
include:
  - .package
  - .config
  - .service
