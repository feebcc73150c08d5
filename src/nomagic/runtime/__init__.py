"""Lightweight processes in the style of Erlang/OTP: mailboxes, selective receive, links,
monitors and supervisors. Knows nothing of neurons: the processes engine is built on it."""

from .core import *  # noqa: F403
from .core import __all__  # noqa: F401
