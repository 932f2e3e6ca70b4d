"""track.get_or_create_experiment: one experiment per name, also when creation races."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from segexp.errors import TrackingError
from segexp.track import get_or_create_experiment


def test_creates_once_then_finds_it(store):
    client = MlflowClient(store)
    first = get_or_create_experiment(client, "fresh")
    assert get_or_create_experiment(client, "fresh") == first
    assert [e.name for e in client.search_experiments()].count("fresh") == 1


def test_a_lost_creation_race_returns_the_winners_experiment(store):
    client = MlflowClient(store)

    class Racing(MlflowClient):
        """Another process creates the experiment between our look-up and our create."""

        def __init__(self):
            super().__init__(store)
            self.looked = 0

        def get_experiment_by_name(self, name):
            self.looked += 1
            return None if self.looked == 1 else super().get_experiment_by_name(name)

        def create_experiment(self, name, *args, **kwargs):
            client.create_experiment(name)  # the winner
            return super().create_experiment(name, *args, **kwargs)  # raises: already exists

    racing = Racing()
    got = get_or_create_experiment(racing, "raced")
    assert got == client.get_experiment_by_name("raced").experiment_id
    assert got != "0"  # not Default


def test_a_deleted_experiment_is_a_one_line_error(store):
    client = MlflowClient(store)
    client.delete_experiment(get_or_create_experiment(client, "gone"))
    with pytest.raises(TrackingError, match=r"tracking.experiment='gone' is deleted"):
        get_or_create_experiment(client, "gone")
