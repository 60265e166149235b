#!{{ grains['pythonexecutable'] }}
"""salt-run saltutil.sync_all for the master whose config file is argv[1], stateful output.

Rendered by the redis_syndic formula (package/sync.sls) with the Python running Salt in the
shebang. The last line follows cmd.run's stateful protocol: changed=yes only if a module
was synced or removed, so salt-master is restarted only when its modules really changed.
"""
import shlex
import sys

import salt.config
import salt.runner

opts = salt.config.master_config(sys.argv[1])
synced = salt.runner.RunnerClient(opts).cmd("saltutil.sync_all", print_event=False)
if not isinstance(synced, dict):  # the runner failed: its return is the error text
    sys.exit("saltutil.sync_all failed: %s" % synced)
changed = sorted(name for names in synced.values() for name in (names or []))
comment = "synced: " + ", ".join(changed) if changed else "master modules already in sync"
print("changed=%s comment=%s" % ("yes" if changed else "no", shlex.quote(comment)))
