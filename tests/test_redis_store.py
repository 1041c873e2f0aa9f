"""backend.distributed.store against a real redis-server: admission, leases, fences, cancels."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import replace

import pytest
import redis

from backend.distributed.store import JobStore, StoreSettings
from tests.redis_server import redis_client, redis_server, unique_prefix  # noqa: F401

LEASE = 0.3
BEAT = 0.2  # a worker is live for 0.6 s after its beat
MODEL = "sd-turbo"
WORKER = {"capacity": 2, "retry_after": 7, "models": [MODEL]}


def settings(**changes: object) -> StoreSettings:
    base = StoreSettings(
        prefix=unique_prefix(),
        ttl_seconds=60.0,
        max_finished=100,
        lease_seconds=LEASE,
        heartbeat_seconds=BEAT,
        max_attempts=3,
        delivery_seconds=30.0,  # apart from LEASE: a claim's own lease is what expires
    )
    return replace(base, **changes)


@pytest.fixture
def store(redis_client):  # noqa: F811
    return JobStore(redis_client, settings())


def record(model: str = MODEL, keep: bool = True, **extra: object) -> dict:
    return {
        "id": secrets.token_urlsafe(16),
        "model": model,
        "owner": None,
        "keep": keep,
        "created_at": 1712345678.123456,  # more digits than Lua's number formatting keeps
        "deadline_at": None,
        "request": {"steps": 20, "prompt": "a cat"},
        "output": {"format": "png", "tags": []},  # an empty list must stay a list
        **extra,
    }


def admitted(store: JobStore, **changes: object) -> dict:
    job = record(**changes)
    assert store.admit(job).accepted
    return job


class CountingRedis(redis.Redis):
    """A client that records every command it sends (one entry per round trip here)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[str] = []

    def execute_command(self, *args: object, **options: object) -> object:
        self.sent.append(str(args[0]))
        return super().execute_command(*args, **options)


def test_admission_refuses_without_workers_and_when_full_in_one_round_trip(redis_server):  # noqa: F811
    client = CountingRedis(port=redis_server.port)
    store = JobStore(client, settings())
    store.admit(record())  # loads the script into Redis (a first call costs more)
    client.sent.clear()
    refused = store.admit(record())
    assert (refused.accepted, refused.reason, refused.capacity, refused.retry_after) == (
        False,
        "no_workers",
        0,
        0,
    )
    assert client.sent == ["EVALSHA"]

    store.heartbeat("w1", WORKER)
    store.heartbeat("w2", {**WORKER, "capacity": 1, "retry_after": 4})
    outcomes = [store.admit(record()) for _ in range(3)]
    assert [(a.accepted, a.outstanding, a.capacity) for a in outcomes] == [
        (True, 1, 3),
        (True, 2, 3),
        (True, 3, 3),
    ]
    client.sent.clear()
    full = store.admit(record())
    assert client.sent == ["EVALSHA"]
    assert (full.accepted, full.reason, full.retry_after, full.outstanding) == (
        False,
        "full",
        4,
        3,
    )
    assert store.outstanding_by_model() == {MODEL: 3}
    client.close()


def test_capacity_follows_heartbeats_and_drops_a_worker_whose_beat_expired(redis_client):  # noqa: F811
    # Beats of 1 s (live for 3 s): a loaded machine may pause the test for a second and the
    # live workers still read as live. Sleeps only ever run long, which only expires w1 more.
    store = JobStore(redis_client, settings(heartbeat_seconds=1.0))
    store.heartbeat("w1", WORKER)
    store.heartbeat("w2", {**WORKER, "capacity": 5})
    assert store.admit(record()).capacity == 7
    assert sorted(w["id"] for w in store.workers()) == ["w1", "w2"]
    time.sleep(1.6)
    store.heartbeat("w2", {**WORKER, "capacity": 5})  # w1 misses its beats
    time.sleep(1.6)  # w1's beat is over 3 s old, w2's 1.6 s
    assert [w["id"] for w in store.workers()] == ["w2"]
    assert store.workers()[0]["capacity"] == 5
    assert store.admit(record()).capacity == 5
    store.forget_worker("w2")
    assert store.workers() == []
    assert store.admit(record()).reason == "no_workers"


def test_routing_goes_to_the_model_queue_only_if_a_live_worker_has_it_loaded(store):
    prefix = store.settings.prefix
    store.heartbeat("w1", {**WORKER, "capacity": 10})
    assert store.admit(record()).queue == f"{prefix}.m.{MODEL}"
    assert store.admit(record(model="other")).queue == f"{prefix}.any"


def test_positions_rank_the_jobs_not_begun(store):
    store.heartbeat("w1", {**WORKER, "capacity": 10})
    jobs = [admitted(store) for _ in range(3)]
    assert [store.get(j["id"])["position"] for j in jobs] == [0, 1, 2]
    claim = store.claim(jobs[0]["id"], "w1")
    assert store.get(jobs[0]["id"])["position"] == 0  # claimed, not begun: still waiting
    assert store.begin(jobs[0]["id"], "w1", claim.attempt, batch_size=1)
    assert [store.get(j["id"])["position"] for j in jobs] == [None, 0, 1]


def test_get_returns_the_record_verbatim_with_the_state(store):
    store.heartbeat("w1", WORKER)
    job = admitted(store)
    state = store.get(job["id"])
    assert {key: state[key] for key in job} == job
    assert [state[key] for key in ("status", "attempt", "step", "total")] == ["queued", 0, 0, 20]
    assert (state["worker"], state["error"], state["result"], state["finished_at"]) == (None,) * 4
    assert store.get("nope") is None


def test_two_racing_claims_exactly_one_wins(store):
    store.heartbeat("w1", WORKER)
    job = admitted(store)
    start = threading.Barrier(8)
    claims = []

    def claim(worker: str) -> None:
        start.wait()
        claims.append(store.claim(job["id"], worker))

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    won = [c for c in claims if c is not None]
    assert len(won) == 1
    assert won[0].attempt == 1
    assert won[0].record == job


def test_a_duplicate_claim_is_dropped_while_the_lease_is_live(store):
    store.heartbeat("w1", WORKER)
    job = admitted(store)
    assert store.claim(job["id"], "w1").attempt == 1
    assert store.claim(job["id"], "w2") is None
    assert store.claim(job["id"], "w1") is None  # the same message delivered twice
    assert store.get(job["id"])["worker"] == "w1"
    assert store.claim("unknown", "w1") is None


def test_an_expired_lease_makes_the_job_due_and_a_new_claim_gets_attempt_2(store):
    store.heartbeat("w1", WORKER)
    job = admitted(store)
    first = store.claim(job["id"], "w1")
    assert store.begin(job["id"], "w1", first.attempt, batch_size=2)
    assert store.progress(job["id"], "w1", first.attempt, 5, 20)
    assert store.due() == []  # the lease is live
    time.sleep(LEASE + 0.1)  # w1 died: no renewal
    (due,) = store.due()
    assert (due["id"], due["model"], due["status"], due["step"], due["worker"]) == (
        job["id"],
        MODEL,
        "queued",
        0,
        None,
    )
    assert due["position"] == 0  # back in the waiting order
    assert store.due() == []  # a fresh delivery lease: not taken twice
    second = store.claim(job["id"], "w2")
    assert second.attempt == 2
    assert store.get(job["id"])["attempt"] == 2


def test_a_result_after_the_lease_ran_out_still_counts_until_a_new_claim(store):
    store.heartbeat("w1", WORKER)
    job = admitted(store)
    claim = store.claim(job["id"], "w1")
    time.sleep(LEASE + 0.1)  # w1 was slow to renew; the reaper re-sent the job
    assert [s["id"] for s in store.due()] == [job["id"]]
    assert store.finish(job["id"], "w1", claim.attempt, "succeeded", {"files": ["a"]}, None)
    assert store.claim(job["id"], "w2") is None  # the re-sent message is dropped


def test_a_finished_job_leaves_no_lease_waiting_place_or_count_behind(store):
    store.heartbeat("w1", WORKER)
    job = admitted(store)
    key = f"{store.settings.prefix}:"
    claim = store.claim(job["id"], "w1")
    assert store.client.zscore(key + "leases", job["id"]) is not None
    assert store.finish(job["id"], "w1", claim.attempt, "failed", None, {"code": "x"})
    assert store.client.zscore(key + "leases", job["id"]) is None
    assert store.client.zscore(key + "waiting", job["id"]) is None
    assert store.client.scard(key + "active") == 0
    assert store.outstanding_by_model() == {}
    assert store.get(job["id"])["error"] == {"code": "x"}


def test_begin_dates_the_run_back_on_redis_clock_and_records_its_batch(store):
    """A run reported late (or only just before its result) still shows when it began."""
    store.heartbeat("w1", WORKER)
    job = admitted(store)
    claim = store.claim(job["id"], "w1")
    assert store.begin(job["id"], "w1", claim.attempt, batch_size=3, ago=2.5)
    assert store.finish(job["id"], "w1", claim.attempt, "succeeded", {}, None)
    state = store.get(job["id"])
    assert state["batch_size"] == 3
    assert 2.5 <= state["finished_at"] - state["started_at"] < 3.5


def test_a_stale_attempt_cannot_write_after_a_re_claim(store):
    store.heartbeat("w1", WORKER)
    job = admitted(store)
    old = store.claim(job["id"], "w1")
    time.sleep(LEASE + 0.1)  # w1 paused past its lease; w2 gets the redelivery
    new = store.claim(job["id"], "w2")
    assert new.attempt == old.attempt + 1
    assert not store.begin(job["id"], "w1", old.attempt, 1)
    assert not store.progress(job["id"], "w1", old.attempt, 3, 20)
    assert store.renew("w1", {job["id"]: old.attempt}) == [job["id"]]
    assert not store.finish(job["id"], "w1", old.attempt, "succeeded", {"files": ["old"]}, None)
    assert not store.finish(job["id"], "w2", old.attempt, "succeeded", {"files": ["old"]}, None)
    assert store.begin(job["id"], "w2", new.attempt, 1)
    assert store.renew("w2", {job["id"]: new.attempt}) == []
    assert not store.finish(job["id"], "w1", new.attempt, "succeeded", {"files": ["w1"]}, None)
    assert store.finish(job["id"], "w2", new.attempt, "succeeded", {"files": ["new"]}, None)
    assert not store.finish(job["id"], "w2", new.attempt, "failed", None, {"code": "x"})
    state = store.get(job["id"])
    assert (state["status"], state["result"]) == ("succeeded", {"files": ["new"]})


def test_renewal_keeps_the_lease_alive(store):
    store.heartbeat("w1", WORKER)
    job = admitted(store)
    claim = store.claim(job["id"], "w1")
    for _ in range(4):
        time.sleep(LEASE / 2)
        assert store.renew("w1", {job["id"]: claim.attempt}) == []
    assert store.due() == []
    assert store.claim(job["id"], "w2") is None


def test_the_attempt_cap_fails_the_job(redis_client):  # noqa: F811
    store = JobStore(redis_client, settings(max_attempts=2))
    store.heartbeat("w1", WORKER)
    job = admitted(store)
    for _ in range(2):
        assert store.claim(job["id"], "w1") is not None
        time.sleep(LEASE + 0.1)
    assert store.claim(job["id"], "w1") is None
    state = store.get(job["id"])
    assert state["status"] == "failed"
    assert state["error"]["code"] == "generation_failed"
    assert "tried 2 times (JOB_MAX_ATTEMPTS=2)" in state["error"]["message"]
    assert store.outstanding_by_model() == {}
    assert store.wait(job["id"], 0.1)


def test_release_gives_the_job_back_without_counting_the_attempt(redis_client):  # noqa: F811
    store = JobStore(redis_client, settings(max_attempts=1))
    store.heartbeat("w1", WORKER)
    job = admitted(store)
    claim = store.claim(job["id"], "w1")
    assert not store.release(job["id"], "w2", claim.attempt)  # not w2's
    assert store.release(job["id"], "w1", claim.attempt)
    assert [s["id"] for s in store.due()] == [job["id"]]  # due at once, for re-sending
    again = store.claim(job["id"], "w2")  # JOB_MAX_ATTEMPTS=1, yet not failed
    assert again is not None
    assert again.attempt == 2  # the fence token still grows
    assert not store.begin(job["id"], "w1", claim.attempt, 1)
    assert store.begin(job["id"], "w2", again.attempt, 1)
    assert not store.release(job["id"], "w2", again.attempt)  # begun: it runs to the end
    assert store.get(job["id"])["released"] == 1


def test_cancel_of_a_queued_job(store):
    store.heartbeat("w1", WORKER)
    job, other = admitted(store), admitted(store)
    state = store.cancel(job["id"])
    assert state["status"] == "cancelled"
    assert state["finished_at"] is not None
    assert store.get(other["id"])["position"] == 0
    assert store.outstanding_by_model() == {MODEL: 1}
    assert store.claim(job["id"], "w1") is None  # its message, delivered later, is dropped
    assert store.cancel(job["id"]) == state  # final: unchanged
    assert store.cancel("unknown") is None


def test_cancel_of_a_running_job_reaches_its_worker(store):
    store.heartbeat("w1", WORKER)
    job = admitted(store)
    heard: list[str] = []
    stop = store.subscribe_cancels(heard.append)
    try:
        claim = store.claim(job["id"], "w1")
        assert store.begin(job["id"], "w1", claim.attempt, 1)
        assert store.cancel(job["id"])["status"] == "cancelled"
        deadline = time.monotonic() + 2
        while not heard and time.monotonic() < deadline:
            time.sleep(0.01)
        assert heard == [job["id"]]
    finally:
        stop()
    assert not store.progress(job["id"], "w1", claim.attempt, 4, 20)
    assert store.renew("w1", {job["id"]: claim.attempt}) == [job["id"]]
    assert not store.finish(job["id"], "w1", claim.attempt, "succeeded", {}, None)
    assert store.get(job["id"])["status"] == "cancelled"
    assert store.due() == []  # out of the leases


def test_wait_wakes_on_finish_and_sees_a_finish_before_the_call(store):
    store.heartbeat("w1", WORKER)
    job = admitted(store)
    claim = store.claim(job["id"], "w1")
    assert not store.wait(job["id"], 0.1)  # not final: times out

    def finish_soon() -> None:
        time.sleep(0.2)
        store.finish(job["id"], "w1", claim.attempt, "succeeded", {"files": []}, None)

    thread = threading.Thread(target=finish_soon)
    thread.start()
    started = time.monotonic()
    assert store.wait(job["id"], 5)
    assert time.monotonic() - started < 2
    thread.join()
    assert store.client.pttl(f"{store.settings.prefix}:done:{job['id']}") > 0  # no leak
    assert store.wait(job["id"], 5)  # finished before this call
    store.client.delete(f"{store.settings.prefix}:done:{job['id']}")  # as if it expired
    started = time.monotonic()
    assert store.wait(job["id"], 5)
    assert time.monotonic() - started < 1
    assert store.get(job["id"])["result"] == {"files": []}


def test_wait_wakes_when_the_job_is_deleted(store):
    store.heartbeat("w1", WORKER)
    job = admitted(store)
    woke: list[float] = []
    thread = threading.Thread(target=lambda: woke.append(store.wait(job["id"], 5)))
    started = time.monotonic()
    thread.start()
    time.sleep(0.2)
    store.delete(job["id"], "it was deleted")
    thread.join()
    assert woke == [True]
    assert time.monotonic() - started < 2


def test_a_finished_job_expires_after_the_ttl_and_its_reason_is_kept(redis_client):  # noqa: F811
    store = JobStore(redis_client, settings(ttl_seconds=0.3))
    store.heartbeat("w1", WORKER)
    job = admitted(store)
    claim = store.claim(job["id"], "w1")
    assert store.finish(job["id"], "w1", claim.attempt, "succeeded", {"files": []}, None)
    assert store.get(job["id"]) is not None
    assert store.gone_reason(job["id"]) is None  # not gone yet
    time.sleep(0.4)
    assert store.get(job["id"]) is None
    assert "JOB_TTL_SECONDS" in store.gone_reason(job["id"])
    assert "0.3 s" in store.gone_reason(job["id"])
    remembered = store.client.pttl(f"{store.settings.prefix}:gone:{job['id']}") / 1000
    assert 2.0 < remembered <= 3.0  # 10 x ttl after it went
    assert store.gone_reason("never-existed") is None


def test_finished_jobs_beyond_max_finished_are_trimmed_oldest_first(redis_client):  # noqa: F811
    store = JobStore(redis_client, settings(max_finished=2))
    store.heartbeat("w1", {**WORKER, "capacity": 10})
    jobs = [admitted(store) for _ in range(3)]
    sync = admitted(store, keep=False)  # sync jobs are not counted, nor trimmed
    for job in [*jobs, sync]:
        claim = store.claim(job["id"], "w1")
        assert store.finish(job["id"], "w1", claim.attempt, "succeeded", {"files": ["x"]}, None)
        time.sleep(0.002)  # distinct finish times (ms)
    assert store.get(jobs[0]["id"]) is None
    assert "MAX_STORED_JOBS" in store.gone_reason(jobs[0]["id"])
    assert all(store.get(job["id"]) for job in [*jobs[1:], sync])
    (trimmed,) = store.trimmed()
    assert (trimmed["id"], trimmed["result"]) == (jobs[0]["id"], {"files": ["x"]})
    assert store.trimmed() == []


def test_inline_images_round_trip_and_are_deleted_on_take(store):
    store.heartbeat("w1", WORKER)
    job = admitted(store, keep=False)
    claim = store.claim(job["id"], "w1")
    images = [b"\x89PNG\r\n\x1a\n\x00\xff", b"second"]
    assert store.finish(job["id"], "w1", claim.attempt, "succeeded", {}, None, inline=images)
    assert store.take_inline(job["id"]) == images
    assert store.take_inline(job["id"]) is None


def test_delete_forgets_a_job_now_and_returns_its_last_state(store):
    store.heartbeat("w1", WORKER)
    job = admitted(store)
    claim = store.claim(job["id"], "w1")
    store.finish(job["id"], "w1", claim.attempt, "succeeded", {"files": ["a.png"]}, None)
    last = store.delete(job["id"], "it was deleted")
    assert last["result"] == {"files": ["a.png"]}
    assert store.get(job["id"]) is None
    assert store.gone_reason(job["id"]) == "it was deleted"
    assert store.delete(job["id"], "again") is None
    running = admitted(store)
    store.delete(running["id"], "its deadline passed")  # unfinished: out of outstanding
    assert store.outstanding_by_model() == {}
    assert store.wait(running["id"], 0.1)  # gone counts as done


def test_a_job_never_claimed_is_due_after_delivery_seconds(redis_client):  # noqa: F811
    store = JobStore(redis_client, settings(delivery_seconds=LEASE))
    store.heartbeat("w1", WORKER)
    job = admitted(store)
    assert store.due() == []
    time.sleep(LEASE + 0.1)  # its message was lost
    assert [s["id"] for s in store.due()] == [job["id"]]
    assert store.claim(job["id"], "w1").attempt == 1


def test_one_reaper_at_a_time(store):
    assert store.reap_lock("w1", 0.3)
    assert store.reap_lock("w1", 0.3)  # the holder keeps it
    assert not store.reap_lock("w2", 0.3)
    time.sleep(0.4)  # w1 died
    assert store.reap_lock("w2", 0.3)


def test_the_store_refuses_a_client_that_decodes_responses(redis_server):  # noqa: F811
    client = redis_server.client(decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        JobStore(client, settings())
    client.close()
