# -*- coding: utf-8 -*-
# vim: ft=sls
# Render <conf_dir>/master.d/<conf_file> (default /etc/salt/master.d/redis_syndic.conf)
# from the pillar: the redis_syndic block, the engine, and per role the master options a
# working bridge needs (map.jinja builds them). Mode 0600: the block may hold a Redis
# password. With trusted_keys_to_files, PEM trusted keys are written under pki_dir first.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import redis_syndic as rs with context %}
{%- set bridge = rs.master_conf.get('redis_syndic', {}) %}

{#- Fail the render with one clear line rather than write a config the engine rejects. #}
{%- if bridge.get('role') not in ('mom', 'dc') %}
{{ raise('redis_syndic formula: pillar redis_syndic:bridge:role must be mom or dc (got ' ~ bridge.get('role') ~ ')') }}
{%- elif not bridge.get('redis_url') %}
{{ raise('redis_syndic formula: pillar redis_syndic:bridge:redis_url is required') }}
{%- elif bridge.role == 'dc' and not (bridge.get('dc') and bridge.get('trusted_keys')) %}
{{ raise('redis_syndic formula: a DC needs redis_syndic:bridge:dc and redis_syndic:bridge:trusted_keys') }}
{%- endif %}

{%- for key in rs.trusted_key_files %}

redis-syndic-config-file-trusted-key-{{ loop.index }}-file-managed:
  file.managed:
    - name: {{ key.path | json }}
    - contents: {{ key.pem | json }}
    - mode: '0644'
    - makedirs: true
    - require_in:
      - file: redis-syndic-config-file-file-managed
{%- endfor %}

redis-syndic-config-file-file-managed:
  file.managed:
    - name: {{ rs.conf_path | json }}
    - source: salt://{{ tplroot }}/config/files/redis_syndic.conf.jinja
    - template: jinja
    - user: {{ rs.config_user | json }}
    - group: {{ rs.config_group | json }}
    - mode: '0600'
    - makedirs: true
    - dir_mode: '0755'
    - context:
        conf: {{ rs.master_conf | json }}
