"""The test and demo lab (not shipped in the wheel): real salt-masters, minions and redis-server on loopback.

``lab.daemons`` builds and drives a lab (``python -m lab demo|up``); ``lab.netproxy`` is the TCP proxy
that cuts, blackholes and delays a link. Tests, benchmarks and ``scripts/demo.sh`` import from here.
"""

from .daemons import (
                      DEFAULT_DCS,
                      PUBLISH_PORT,
                      RET_PORT,
                      DaemonSpec,
                      Lab,
                      LabError,
                      LabTimeout,
                      RedisServer,
                      deep_merge,
                      find_script,
                      free_tcp_port,
                      generate_ed25519_keypair,
                      lab_processes,
                      parse_json_documents,
                      parse_json_output,
                      terminate,
                      wait_until,
)
from .netproxy import Proxy

__all__ = ["DEFAULT_DCS", "PUBLISH_PORT", "RET_PORT", "DaemonSpec", "Lab", "LabError", "LabTimeout", "Proxy",
           "RedisServer", "deep_merge", "find_script", "free_tcp_port", "generate_ed25519_keypair", "lab_processes",
           "parse_json_documents", "parse_json_output", "terminate", "wait_until"]
