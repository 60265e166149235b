# -*- coding: utf-8 -*-
# vim: ft=sls
# Undo init.sls: remove master.d/redis_syndic.conf (and trusted key files written by the
# formula), uninstall the package, restart salt-master. The bridge's state (<cachedir>/
# redis_syndic: ledgers, spool) and the MoM signing key are left in place: a spool may hold
# returns not yet delivered; remove them by hand once the bridge is retired for good.
include:
  - .config.clean
  - .package.clean
  - .service.clean
