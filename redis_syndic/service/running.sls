# -*- coding: utf-8 -*-
# vim: ft=sls
# Restart salt-master when its redis_syndic config, the package or the synced modules
# changed: engines and the event returner only start with the master.
#
# Why `cmd.run ... bg: True` of `salt-call --local service.restart salt-master` and not
# `service.running` with `watch` (the recipe of Salt's FAQ for a minion restarting itself):
# the state run may itself live inside the master being restarted (an orchestration, a
# reactor, `salt-run state.*`) or report its result through it (the master host's own
# minion). A synchronous restart from there is killed half-way or loses the job's return.
# Detached, the restart outlives the state run, whose result is already on its way; the
# price is that a failing restart is not reported by this state (look at the master log).
# `service.running` would also enable/start the unit, which this formula must not decide.
# Set restart_master: False to restart at a time of your choosing instead.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import redis_syndic as rs with context %}

include:
  - {{ tplroot }}.package
  - {{ tplroot }}.config

{%- if rs.restart_master %}

redis-syndic-service-running-cmd-run:
  cmd.run:
    - name: {{ rs.restart_cmd | json }}
    - bg: true
    - onchanges:
      - file: redis-syndic-config-file-file-managed
{%-   for key in rs.trusted_key_files %}
      - file: redis-syndic-config-file-trusted-key-{{ loop.index }}-file-managed
{%-   endfor %}
{%-   if rs.pip.install %}
      - pip: redis-syndic-package-install-pip-installed
{%-   endif %}
{%-   if rs.sync_modules %}
      - cmd: redis-syndic-package-sync-cmd-script
{%-   endif %}
{%- endif %}
