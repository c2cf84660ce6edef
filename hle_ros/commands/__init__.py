"""Commands hle_ros adds to the ``hle`` command line (entry-point group ``hle.commands``, see setup.py and
:mod:`hle_core.cli`): each module follows the ``add_parser(subparsers)`` / ``run(args)`` contract of
:mod:`hle_core.commands` and imports rclpy only inside ``run``, so listing and ``--help`` need no ROS."""
