"""Test-session environment: ROS 2 traffic of this session stays on loopback and apart from other sessions.

Set when pytest loads this file, before any test imports rclpy; subprocesses started by tests inherit it.
- ``ROS_DOMAIN_ID``: derived from this process id (1..100), so that test runs in parallel on one machine
  (several developers, CI) do not see each other's topics. Always overridden: tests must not join a live system.
- ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``: discovery over loopback only (Kilted ignores ROS_LOCALHOST_ONLY).
- ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` unless already set: large images over loopback arrive in ~16 ms
  instead of ~60 ms, and best-effort ones arrive at all (measured on the development machine).
"""
from __future__ import annotations

import os

# Domain ids 1..100 stay inside the range every DDS vendor accepts on Linux (0..101); 0 is the default of live systems.
ROS_DOMAIN_ID = 1 + os.getpid() % 100

os.environ["ROS_DOMAIN_ID"] = str(ROS_DOMAIN_ID)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")


def pytest_report_header(config) -> str:
    return (f"ROS 2 test environment: ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} "
            f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']} "
            f"FASTDDS_BUILTIN_TRANSPORTS={os.environ['FASTDDS_BUILTIN_TRANSPORTS']}")
