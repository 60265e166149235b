# -*- coding: utf-8 -*-
# vim: ft=sls
# Uninstall the package from Salt's Python, after the configuration that loads it is gone.
# Modules deployed through file_roots (sync_modules) stay in the master's extension_modules
# until they are removed from file_roots and `salt-run saltutil.sync_all` runs again.
{%- set tplroot = tpldir.split('/')[0] %}
{%- set sls_config_clean = tplroot ~ '.config.clean' %}
{%- from tplroot ~ '/map.jinja' import redis_syndic as rs with context %}

include:
  - {{ sls_config_clean }}

{%- if rs.pip.install %}

redis-syndic-package-clean-pip-removed:
  pip.removed:
    - name: salt-redis-syndic
{%-   if rs.pip.bin_env %}
    - bin_env: {{ rs.pip.bin_env | json }}
{%-   endif %}
    - require:
      - sls: {{ sls_config_clean }}
{%- endif %}
