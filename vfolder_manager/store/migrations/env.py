from alembic import context

from gpuhub.db import run_migrations_env
from vfolder_manager.store.schema import Base

run_migrations_env(context, Base.metadata)
