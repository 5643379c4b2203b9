"""What store functions accept: a connection (plain or from a pool) or a pool."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

if TYPE_CHECKING:
    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]
else:  # the runtime classes are not generic
    Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy
Executor: TypeAlias = Connection | asyncpg.Pool
