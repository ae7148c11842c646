"""One lock per model: shared by every caller, waited for, cancellable, gone with the model."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from gemma_nb import exclusive as ex


class FakeModel:
    """Any object can be a key; the lock module never looks inside."""


def test_one_model_has_one_lock_and_two_models_two():
    a, b = FakeModel(), FakeModel()
    assert ex.model_lock(a) is ex.model_lock(a)
    assert ex.model_lock(a) is not ex.model_lock(b)


def test_the_lock_goes_with_its_model():
    model = FakeModel()
    ex.model_lock(model)
    before = len(ex._locks)
    del model
    gc.collect()
    assert len(ex._locks) == before - 1


def test_a_free_model_is_taken_without_waiting():
    model, waits = FakeModel(), []
    with ex.exclusive(model, on_wait=lambda: waits.append(1)):
        assert ex.model_lock(model).locked()
    assert waits == []
    assert not ex.model_lock(model).locked()


def test_a_busy_model_makes_the_second_caller_wait_and_say_so():
    model, order, waits = FakeModel(), [], []
    holding = threading.Event()

    def first() -> None:
        with ex.exclusive(model):
            holding.set()
            time.sleep(0.2)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait(5)
    with ex.exclusive(model, on_wait=lambda: waits.append(time.monotonic())):
        order.append("second in")
    thread.join(5)
    assert order == ["first done", "second in"]
    assert len(waits) == 1


def test_cancel_ends_the_wait_and_takes_nothing():
    model, cancel = FakeModel(), threading.Event()
    lock = ex.model_lock(model)
    lock.acquire()
    try:
        threading.Timer(0.1, cancel.set).start()
        start = time.monotonic()
        with pytest.raises(ex.Cancelled):
            with ex.exclusive(model, cancel=cancel):
                pytest.fail("the block must not run")
        assert time.monotonic() - start < 2
    finally:
        lock.release()
    assert not lock.locked()


def test_an_error_in_the_block_releases_the_model():
    model = FakeModel()
    with pytest.raises(ValueError):
        with ex.exclusive(model):
            raise ValueError("boom")
    assert not ex.model_lock(model).locked()
