from db.migrations import LATEST_VERSION, MIGRATIONS, current_version, is_current, migrate
from db.store import Store

# The versions in order (a number may be skipped while branches that add one meet).
VERSIONS = [version for version, _, _ in MIGRATIONS]


async def test_migrate_brings_an_empty_database_to_the_latest_version(database_url: str) -> None:
    async with Store(database_url) as store:
        assert await current_version(store) == 0
        assert not await is_current(store)
        assert await migrate(store) == VERSIONS
        assert await is_current(store)


async def test_migrate_twice_applies_nothing_the_second_time(store: Store) -> None:
    assert await migrate(store) == []
    assert await current_version(store) == LATEST_VERSION


async def test_a_database_at_version_1_is_brought_forward(database_url: str) -> None:
    # Databases created by the first release must upgrade in place.
    from db import migrations

    async with Store(database_url) as store:
        first_only = migrations.MIGRATIONS[:1]
        original = migrations.MIGRATIONS
        migrations.MIGRATIONS = first_only
        try:
            assert await migrate(store) == [1]
        finally:
            migrations.MIGRATIONS = original
        assert await migrate(store) == VERSIONS[1:]
        assert await is_current(store)
