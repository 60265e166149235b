"""salt-redis-syndic: replace Salt's Syndic with Redis.

A master of masters (MoM) and one salt-master per datacenter exchange jobs and
returns through Redis instead of salt-syndic's ZeroMQ link: the MoM engine signs
every published job into a Redis Stream, each datacenter engine verifies,
dedupes and re-publishes it with the MoM's jid, and the returner sends signed,
batched returns back up a reliable Redis list (spooling locally while Redis is
away) so the MoM stores them as native returns. The Salt modules live in
``_engines/``, ``_returners/`` and ``_runners/`` and are found through the
``salt.loader`` entry point (:func:`salt_redis_syndic.loader.get_loader_dirs`)
or synced from ``file_roots``.
"""

__version__ = "0.1.0"
