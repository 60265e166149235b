# -*- coding: utf-8 -*-
# vim: ft=sls
# Install salt-redis-syndic into the Python that runs Salt (pip.bin_env, by default not passed:
# Salt's pip module then runs salt-pip on a onedir, which installs into the extras directory that
# survives Salt upgrades, and `python -m pip` of the Python running Salt otherwise): salt-master then finds the engine, returner and runner through
# the package's salt.loader entry point, no sync needed. Pin a version (name: pkg==X) so that
# pip.installed reports a change only when the version changes (a local path or URL is
# reinstalled, and the master restarted, on every run).
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import redis_syndic as rs with context %}

{%- if rs.pip.install %}

redis-syndic-package-install-pip-installed:
  pip.installed:
    - name: {{ rs.pip.name | json }}
{%-   if rs.pip.bin_env %}
    - bin_env: {{ rs.pip.bin_env | json }}
{%-   endif %}
{%-   for option, value in rs.pip.options | dictsort %}
    - {{ option }}: {{ value | json }}
{%-   endfor %}
{%- endif %}
