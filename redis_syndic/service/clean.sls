# -*- coding: utf-8 -*-
# vim: ft=sls
# Undeploy: remove the configuration and the package (package/clean.sls includes
# config/clean.sls), then restart salt-master so the running engine and returner go away.
# salt-master itself is never stopped nor disabled: it is not this formula's service.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import redis_syndic as rs with context %}

include:
  - {{ tplroot }}.package.clean

{%- if rs.restart_master %}

redis-syndic-service-clean-cmd-run:
  cmd.run:
    - name: {{ rs.restart_cmd | json }}
    - bg: true
    - onchanges:
      - file: redis-syndic-config-clean-file-absent
{%-   if rs.pip.install %}
      - pip: redis-syndic-package-clean-pip-removed
{%-   endif %}
{%- endif %}
