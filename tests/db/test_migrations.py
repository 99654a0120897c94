from db.migrations import LATEST_VERSION, current_version, is_current, migrate
from db.store import Store


async def test_migrate_brings_an_empty_database_to_the_latest_version(database_url: str) -> None:
    async with Store(database_url) as store:
        assert await current_version(store) == 0
        assert not await is_current(store)
        assert await migrate(store) == [LATEST_VERSION]
        assert await is_current(store)


async def test_migrate_twice_applies_nothing_the_second_time(store: Store) -> None:
    assert await migrate(store) == []
    assert await current_version(store) == LATEST_VERSION
