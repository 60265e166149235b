# -*- coding: utf-8 -*-
# vim: ft=sls
# Remove the master.d file (and the trusted key files this formula wrote). salt-master keeps
# running the engine until it restarts: service/clean.sls does that.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import redis_syndic as rs with context %}

redis-syndic-config-clean-file-absent:
  file.absent:
    - name: {{ rs.conf_path | json }}
{%- for key in rs.trusted_key_files %}

redis-syndic-config-clean-trusted-key-{{ loop.index }}-file-absent:
  file.absent:
    - name: {{ key.path | json }}
{%- endfor %}
