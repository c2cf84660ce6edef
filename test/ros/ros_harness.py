"""What the node-process tests share: the environment and launch of a node process on real DDS, isolated in a
ROS_DOMAIN_ID of its own with localhost discovery, and a test-side driver node in its own rclpy context."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Callable

import rclpy
from rclpy.executors import SingleThreadedExecutor


def node_env(domain: int) -> dict[str, str]:
    """The node process's environment: its own domain, localhost discovery, one OpenMP thread, and no
    FASTDDS_BUILTIN_TRANSPORTS (the node must choose LARGE_DATA itself)."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    return env


def start_node(cmd: list[str], args: list[str], log: Path, domain: int, cwd: str | Path) -> subprocess.Popen:
    """``cmd --ros-args args`` as a node process, stdout and stderr into ``log``."""
    return subprocess.Popen([*cmd, "--ros-args", *args], cwd=cwd, env=node_env(domain), stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


class DriverNode:
    """A test-side node in its own context and domain, with localhost discovery; ``transports`` sets
    FASTDDS_BUILTIN_TRANSPORTS while the context is created (e.g. LARGE_DATA for very large frames)."""

    def __init__(self, name: str, domain: int, transports: str | None = None) -> None:
        changes = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
        if transports is not None:
            changes["FASTDDS_BUILTIN_TRANSPORTS"] = transports
        saved = {k: os.environ.get(k) for k in changes}
        os.environ.update(changes)
        try:
            self.context = rclpy.Context()
            rclpy.init(context=self.context, domain_id=domain)
            self.node = rclpy.create_node(name, context=self.context)
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.02)
        return True

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=0.5)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
