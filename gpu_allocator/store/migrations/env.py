from alembic import context

from gpu_allocator.store.schema import Base
from gpuhub.db import run_migrations_env

run_migrations_env(context, Base.metadata)
