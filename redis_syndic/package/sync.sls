# -*- coding: utf-8 -*-
# vim: ft=sls
# file_roots deployment (sync_modules: True): `salt-run saltutil.sync_all` on this master, so
# the _engines/, _returners/ and _runners/ served from its file_roots land in its
# extension_modules. Runs only if the pillar asks for it.
#
# Why not a `salt.runner: saltutil.sync_all` state: it reports changes on every run (the
# runner's return, even when nothing was synced), which would restart salt-master on every
# state run. files/sync_all.py runs the same runner with the master's own config and reports
# in cmd.run's stateful format, changed=yes only when a module was added, updated or removed.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import redis_syndic as rs with context %}

{%- if rs.sync_modules %}

redis-syndic-package-sync-cmd-script:
  cmd.script:
    - source: salt://{{ tplroot }}/package/files/sync_all.py
    - template: jinja
    - args: {{ (rs.conf_dir ~ '/master') | json }}
    - stateful: true
{%- endif %}
