"""Tests of FrameReplayBuffer: stacks, n-step targets, wrap-around, priorities,
checkpoints, memory and errors."""

import json
import os
import shutil

import numpy as np
import pytest

from benchmarks.replay_fill import synthetic_transitions
from tf_softmoe.replay import FrameReplayBuffer


def BootstrapBuffer(*args, **kwargs):  # pylint: disable=invalid-name
    """A buffer that bootstraps at time-limit cuts (what most tests model).

    The default, Dopamine's "drop", is tested at the end of this file and in
    tests/reference/test_replay.py.
    """
    kwargs.setdefault("time_limit_cut", "bootstrap")
    return FrameReplayBuffer(*args, **kwargs)


# 0.999 quantile of the chi-square distribution with 9 degrees of freedom.
CHI2_9DOF_999 = 27.877


def frame(value, shape=(3, 3), dtype=np.uint8):
    return np.full(shape, value, dtype=dtype)


def newest(stacks):
    """The per-frame value of [B, H, W, S] stacks filled by `frame()`."""
    return stacks[:, 0, 0, :]


# --------------------------------------------------------------------------
# A reference model: the whole history as episodes, no circular storage.


class ReferenceReplay:
    """Drives a FrameReplayBuffer and recomputes every target from history.

    Frames are int32 and carry a unique id (the id of the write), so a
    sampled stack can be traced back to the episodes its frames came from.
    """

    def __init__(self, buffer):
        self.buffer = buffer
        # Each episode: {"steps": [...], "final": frame id or None,
        # "end": None, "terminal", "truncated" or "empty"}.
        self.episodes = []
        self.slot_owner = {}          # slot -> ("step", ep, t) | ("final", ep)
        self.write_of_slot = {}       # slot -> write number
        self.frame_episode = {}       # frame id -> episode
        self.writes = 0
        self.open = False

    def _write(self, owner, frame_id):
        slot = self.writes % self.buffer.capacity
        self.slot_owner[slot] = owner
        self.write_of_slot[slot] = self.writes
        self.frame_episode[frame_id] = owner[1]
        self.writes += 1

    def add(self, action, reward, end=None, with_next_frame=False):
        if not self.open:
            self.episodes.append({"steps": [], "final": None, "end": None})
            self.open = True
        episode = len(self.episodes) - 1
        frame_id = self.writes + 1
        steps = self.episodes[episode]["steps"]
        steps.append({"frame": frame_id, "action": action, "reward": reward})
        next_frame = None
        if end is not None:
            self.episodes[episode]["end"] = end
            if with_next_frame or end == "truncated":
                next_frame = frame(-(self.writes + 2), dtype=np.int32)
        self.buffer.add(frame(frame_id, dtype=np.int32), action, reward,
                        terminal=end == "terminal",
                        truncated=end == "truncated",
                        next_frame=next_frame)
        self._write(("step", episode, len(steps) - 1), frame_id)
        if next_frame is not None:
            self.episodes[episode]["final"] = -(frame_id + 1)
            self._write(("final", episode), -(frame_id + 1))
        if end is not None:
            self.open = False

    def truncate_open_episode(self):
        closed = self.buffer.truncate_open_episode()
        assert closed == self.open
        if not self.open:
            return
        episode = self.episodes[-1]
        last = episode["steps"].pop()
        episode["final"] = last["frame"]
        episode["end"] = "truncated" if episode["steps"] else "empty"
        slot = (self.writes - 1) % self.buffer.capacity
        self.slot_owner[slot] = ("final", len(self.episodes) - 1)
        self.open = False

    def sampleable_slots(self):
        buffer = self.buffer
        oldest_write = max(0, self.writes - buffer.capacity)
        if self.writes > buffer.capacity:
            oldest_write += buffer.stack_size - 1
        slots = []
        for slot, owner in self.slot_owner.items():
            write = self.write_of_slot[slot]
            if (owner[0] == "step" and write >= oldest_write
                    and write <= self.writes - 1 - buffer.n_step):
                slots.append(slot)
        return sorted(slots)

    def stack(self, episode, t, final=False):
        steps = self.episodes[episode]["steps"]
        ids = [steps[k]["frame"] if k >= 0 else 0
               for k in range(t - self.buffer.stack_size + 1, t + 1)]
        if final:
            ids = ids[1:] + [self.episodes[episode]["final"]]
        return ids

    def expected(self, slot):
        kind, episode, t = self.slot_owner[slot]
        assert kind == "step"
        info = self.episodes[episode]
        steps = info["steps"]
        n, gamma = self.buffer.n_step, self.buffer.gamma
        length = n
        last = len(steps) - 1
        if info["end"] is not None and last - t + 1 <= n:
            length = last - t + 1
        rewards = [steps[t + k]["reward"] for k in range(length)]
        reward = sum(gamma ** k * r for k, r in enumerate(rewards))
        terminal = info["end"] == "terminal" and t + length - 1 == last
        if t + length <= last:
            next_ids = self.stack(episode, t + length)
        elif info["final"] is not None:
            next_ids = self.stack(episode, last, final=True)
        else:
            next_ids = None   # After a terminal without a final frame.
        return {
            "state": self.stack(episode, t),
            "action": steps[t]["action"],
            "reward": reward,
            "discount": 0.0 if terminal else gamma ** length,
            "terminal": terminal,
            "next_state": next_ids,
        }

    def check_batch(self, batch):
        allowed = set(self.sampleable_slots())
        for row, slot in enumerate(batch["indices"].tolist()):
            assert slot in allowed, (slot, sorted(allowed))
            want = self.expected(slot)
            assert newest(batch["state"])[row].tolist() == want["state"]
            assert batch["action"][row] == want["action"]
            assert batch["reward"][row] == pytest.approx(want["reward"],
                                                         rel=1e-6)
            assert batch["discount"][row] == pytest.approx(want["discount"],
                                                           rel=1e-6)
            assert bool(batch["terminal"][row]) == want["terminal"]
            next_ids = newest(batch["next_state"])[row].tolist()
            if want["next_state"] is not None:
                assert next_ids == want["next_state"]
            # Every stack is zero-padded and drawn from one episode only.
            for ids in (newest(batch["state"])[row].tolist(), next_ids):
                nonzero = [i for i in ids if i != 0]
                assert len({self.frame_episode[i] for i in nonzero}) <= 1
                padding = len(ids) - len(nonzero)
                assert ids[:padding] == [0] * padding


@pytest.mark.parametrize("prioritized", [False, True])
@pytest.mark.parametrize("n_step,stack_size", [(1, 4), (3, 4), (5, 2)])
def test_samples_match_a_reference_model_across_wraps(prioritized, n_step,
                                                      stack_size):
    buffer = BootstrapBuffer(41, frame_shape=(3, 3), stack_size=stack_size,
                               n_step=n_step, gamma=0.9,
                               prioritized=prioritized, frame_dtype=np.int32,
                               seed=5)
    reference = ReferenceReplay(buffer)
    rng = np.random.default_rng(11)
    checked = 0
    for step in range(400):
        event = rng.random()
        if event < 0.06:
            end, with_next = "terminal", bool(rng.random() < 0.5)
        elif event < 0.11:
            end, with_next = "truncated", True
        else:
            end, with_next = None, False
        if reference.open and rng.random() < 0.01:
            reference.truncate_open_episode()
        reference.add(int(rng.integers(0, 18)), float(rng.integers(-1, 2)),
                      end, with_next)
        assert buffer.num_sampleable == len(reference.sampleable_slots())
        if step % 7 == 0 and buffer.can_sample(8):
            batch = buffer.sample(8)
            reference.check_batch(batch)
            checked += 8
            if prioritized:
                buffer.update_priorities(batch["indices"], rng.random(8) + 0.1)
    assert checked > 300
    assert buffer.num_added == 400


# --------------------------------------------------------------------------
# Hand-computed n-step targets and stacks.


def _two_episode_buffer():
    """Episode A: rewards 1,2,3,4, terminal after the 4th step (frames 1..4).
    Episode B: rewards 10,20, truncated after the 2nd (frames 11, 12; final
    13).
    Episode C: frames 21..24, no end yet (it makes the windows above complete).
    """
    buffer = BootstrapBuffer(20, frame_shape=(3, 3), stack_size=2, n_step=3,
                               gamma=0.5, seed=0)
    for k, reward in enumerate([1.0, 2.0, 3.0, 4.0]):
        buffer.add(frame(1 + k), k, reward, terminal=k == 3)
    buffer.add(frame(11), 5, 10.0, terminal=False)
    buffer.add(frame(12), 6, 20.0, terminal=False, truncated=True,
               next_frame=frame(13))
    for k in range(4):
        buffer.add(frame(21 + k), 7, 0.0, terminal=False)
    return buffer


def test_n_step_targets_by_hand_with_a_terminal_and_a_truncation():
    buffer = _two_episode_buffer()
    # Slots: A at 0..3, B at 4, 5, B's final frame at 6, C at 7..10.
    batch = buffer.get_transitions([0, 1, 2, 3, 4, 5])
    np.testing.assert_allclose(batch["reward"], [
        1 + 0.5 * 2 + 0.25 * 3,   # full window, no end
        2 + 0.5 * 3 + 0.25 * 4,   # terminal at the window's last step
        3 + 0.5 * 4,              # window cut at the terminal
        4,
        10 + 0.5 * 20,            # window cut at the truncation
        20])
    np.testing.assert_allclose(batch["discount"], [0.125, 0, 0, 0, 0.25, 0.5])
    assert batch["terminal"].tolist() == [False, True, True, True, False,
                                          False]
    assert batch["action"].tolist() == [0, 1, 2, 3, 5, 6]
    assert newest(batch["state"]).tolist() == [
        [0, 1], [1, 2], [2, 3], [3, 4], [0, 11], [11, 12]]
    next_state = newest(batch["next_state"]).tolist()
    assert next_state[0] == [3, 4]
    # After a truncation the next state is the final observation.
    assert next_state[4] == [12, 13] and next_state[5] == [12, 13]
    # After a terminal it is irrelevant but never mixes episodes.
    for row in (1, 2, 3):
        first, second = next_state[row]
        assert first == 0 or first // 10 == second // 10
    assert buffer.is_sampleable([6]).tolist() == [False]   # the final frame


def test_a_terminal_with_next_frame_gives_the_true_final_observation():
    buffer = BootstrapBuffer(20, frame_shape=(3, 3), stack_size=2, n_step=1,
                               gamma=0.9, seed=0)
    buffer.add(frame(1), 0, 1.0, terminal=False)
    buffer.add(frame(2), 0, 1.0, terminal=True, next_frame=frame(3))
    buffer.add(frame(4), 0, 1.0, terminal=False)
    buffer.add(frame(5), 0, 1.0, terminal=False)
    batch = buffer.get_transitions([1])
    assert newest(batch["next_state"]).tolist() == [[2, 3]]
    assert batch["discount"].tolist() == [0.0]


def test_stacks_are_zero_padded_at_episode_starts_also_after_wrap_around():
    capacity = 10
    buffer = BootstrapBuffer(capacity, frame_shape=(3, 3), stack_size=4,
                               n_step=1, seed=0)
    value = 0
    # 11 steps of one long episode fill slots 0..9 and wrap to slot 0; the
    # terminal lands in slot 0, so the next episode starts in slot 1 with the
    # old lap's frames in slots 9, 8 right before it.
    for k in range(11):
        value += 1
        buffer.add(frame(value), 0, 0.0, terminal=k == 10)
    for k in range(4):
        value += 1
        buffer.add(frame(100 + k), 0, 0.0, terminal=False)
    batch = buffer.get_transitions([1, 2, 3])
    assert newest(batch["state"]).tolist() == [
        [0, 0, 0, 100], [0, 0, 100, 101], [0, 100, 101, 102]]
    # The stack ending at slot 0 (the old episode's last step, right after
    # the wrap) keeps its own episode's frames from slots 7, 8, 9.
    assert buffer.is_sampleable([0]).tolist() == [True]
    state = buffer.get_transitions([0])["state"]
    assert newest(state).tolist() == [[8, 9, 10, 11]]


def test_an_episode_starting_in_slot_zero_after_wrap_hides_the_old_lap():
    capacity = 8
    buffer = BootstrapBuffer(capacity, frame_shape=(3, 3), stack_size=3,
                               n_step=1, seed=0)
    for k in range(8):
        buffer.add(frame(1 + k), 0, 0.0, terminal=k == 7)
    for k in range(4):
        buffer.add(frame(50 + k), 0, 0.0, terminal=False)
    assert newest(buffer.get_transitions([0, 1, 2])["state"]).tolist() == [
        [0, 0, 50], [0, 50, 51], [50, 51, 52]]


def test_circular_overwrite_drops_the_oldest_and_excludes_near_the_cursor():
    capacity, stack_size, n_step = 12, 4, 2
    buffer = BootstrapBuffer(capacity, frame_shape=(3, 3),
                               stack_size=stack_size, n_step=n_step, seed=3)
    for k in range(30):
        buffer.add(frame(1 + k), k % 5, 1.0, terminal=False)
    assert len(buffer) == capacity
    assert buffer.num_added == 30
    assert buffer.num_sampleable == capacity - n_step - (stack_size - 1)
    cursor = 30 % capacity
    invalid = [(cursor + k) % capacity for k in range(stack_size - 1)]
    invalid += [(cursor - 1 - k) % capacity for k in range(n_step)]
    valid = sorted(set(range(capacity)) - set(invalid))
    assert buffer.is_sampleable(invalid).tolist() == [False] * len(invalid)
    assert buffer.is_sampleable(valid).tolist() == [True] * len(valid)
    states = np.concatenate(
        [newest(buffer.sample(7)["state"]) for _ in range(40)])
    # Frames 1..18 were overwritten; the oldest 3 stored ones (19..21) only
    # appear as history of later states.
    assert states.min() >= 30 - capacity + 1
    assert set(states[:, -1].tolist()) == set(range(22, 29))


# --------------------------------------------------------------------------
# Prioritized replay.


def _prioritized_buffer(priority_exponent=1.0, importance_exponent=0.5,
                        seed=0):
    """40 sampleable transitions in slots 0..39 (slot 40 awaits its next)."""
    buffer = BootstrapBuffer(64, frame_shape=(3, 3), stack_size=2, n_step=1,
                               prioritized=True,
                               priority_exponent=priority_exponent,
                               importance_exponent=importance_exponent,
                               seed=seed)
    for k in range(41):
        buffer.add(frame(1 + k), k, 0.0, terminal=False)
    return buffer


def test_prioritized_frequencies_are_proportional_to_priority_to_the_alpha():
    buffer = _prioritized_buffer(priority_exponent=0.5)
    assert buffer.is_sampleable(np.arange(40)).all()
    raw = np.zeros(40)
    raw[:10] = np.arange(1.0, 11.0) ** 2
    buffer.update_priorities(np.arange(40), raw)
    np.testing.assert_allclose(buffer.get_priorities(np.arange(10)),
                               np.arange(1.0, 11.0))
    draws = np.concatenate([buffer.sample(32)["indices"] for _ in range(625)])
    assert draws.max() < 10
    counts = np.bincount(draws, minlength=10)
    assert counts.sum() == 20000
    expected = 20000 * np.arange(1.0, 11.0) / 55.0
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < CHI2_9DOF_999, (counts, expected)
    # The same statistic rejects sampling proportional to the raw priorities.
    wrong = 20000 * raw[:10] / raw.sum()
    assert np.sum((counts - wrong) ** 2 / wrong) > 10 * CHI2_9DOF_999


def test_importance_weights_match_hand_values():
    buffer = _prioritized_buffer(importance_exponent=0.5)
    priorities = np.zeros(40)
    priorities[[2, 5, 7]] = [1.0, 4.0, 16.0]
    buffer.update_priorities(np.arange(40), priorities)
    probability = {2: 1 / 21, 5: 4 / 21, 7: 16 / 21}
    for _ in range(20):
        batch = buffer.sample(6)
        indices = batch["indices"].tolist()
        assert set(indices) <= {2, 5, 7}
        np.testing.assert_allclose(batch["probabilities"],
                                   [probability[i] for i in indices],
                                   rtol=1e-6)
        # (1 / (N P))^0.5 normalised by the batch max: 1/sqrt(P) over its max.
        raw = np.array([probability[i] ** -0.5 for i in indices])
        np.testing.assert_allclose(batch["importance_weights"],
                                   raw / raw.max(), rtol=1e-6)
    # With all three in a batch the weights are exactly 1, 1/2, 1/4.
    batch = buffer.sample(21)
    weight = dict(zip(batch["indices"].tolist(),
                      batch["importance_weights"].tolist()))
    assert weight == pytest.approx({2: 1.0, 5: 0.5, 7: 0.25})


def test_update_priorities_moves_the_sampling_mass():
    buffer = _prioritized_buffer()
    # Fresh items share the max priority: stratified draws of 40 hit each once.
    assert sorted(buffer.sample(40)["indices"].tolist()) == list(range(40))
    applied = buffer.update_priorities([3, 4], [0.0, 1000.0])
    assert applied.tolist() == [True, True]
    draws = np.concatenate([buffer.sample(32)["indices"] for _ in range(10)])
    assert 3 not in draws.tolist()
    assert np.mean(draws == 4) > 0.9


def test_new_items_enter_at_the_max_priority_seen_when_they_were_added():
    buffer = _prioritized_buffer()
    np.testing.assert_array_equal(buffer.get_priorities(np.arange(40)),
                                  np.ones(40))
    assert buffer.max_priority == 1.0
    buffer.update_priorities([0, 1], [7.0, 0.5])
    buffer.update_priorities([0], [0.1])       # The max never decreases.
    assert buffer.max_priority == 7.0
    buffer.add(frame(99), 0, 0.0, terminal=False)
    buffer.add(frame(98), 0, 0.0, terminal=False)
    # Slots 40, 41 just became sampleable (n_step=1); the newest (42) is not
    # yet. Slot 40 was added before the update, so it enters at the max of
    # its add (1.0), as in Dopamine; slot 41 at 7.0.
    assert buffer.get_priorities([40, 41, 42]).tolist() == [1.0, 7.0, 0.0]


def test_priorities_of_slots_that_stopped_being_sampleable_are_dropped():
    buffer = BootstrapBuffer(10, frame_shape=(3, 3), stack_size=3, n_step=1,
                               prioritized=True, seed=0)
    for k in range(9):
        buffer.add(frame(1 + k), 0, 0.0, terminal=False)
    for k in range(20):
        buffer.add(frame(50 + k), 0, 0.0, terminal=False)
    leaves = buffer.sum_tree.nodes[buffer.capacity:]
    assert np.array_equal(leaves > 0, buffer.is_sampleable(np.arange(10)))
    oldest = 29 % 10
    newest_slot = (oldest - 1) % 10
    applied = buffer.update_priorities([oldest, newest_slot, 5], [3.0] * 3)
    assert applied.tolist() == [False, False, True]
    assert buffer.get_priorities([oldest, newest_slot]).tolist() == [0.0, 0.0]


def test_sum_tree_holds_mass_exactly_on_sampleable_slots_with_truncations():
    buffer = BootstrapBuffer(23, frame_shape=(2, 2), stack_size=4, n_step=3,
                               prioritized=True, seed=0)
    rng = np.random.default_rng(2)
    for k in range(200):
        truncated = rng.random() < 0.1
        buffer.add(frame(k % 200 + 1, (2, 2)), 0, 0.0,
                   terminal=rng.random() < 0.05, truncated=truncated,
                   next_frame=frame(255, (2, 2)) if truncated else None)
        if rng.random() < 0.02:
            buffer.truncate_open_episode()
        leaves = buffer.sum_tree.nodes[buffer.capacity:]
        assert np.array_equal(leaves > 0, buffer.is_sampleable(np.arange(23)))


# --------------------------------------------------------------------------
# Checkpoints.


@pytest.mark.parametrize("prioritized", [False, True])
def test_state_dict_and_save_load_give_identical_later_samples(tmp_path,
                                                               prioritized):
    def build():
        buffer = BootstrapBuffer(30, frame_shape=(4, 4), stack_size=4,
                                   n_step=3, prioritized=prioritized, seed=9)
        frames, actions, rewards, terminals = synthetic_transitions(
            0, 45, (4, 4), np.uint8, episode_length=7)
        for k in range(45):
            buffer.add(frames[k], actions[k], rewards[k], terminals[k])
        buffer.sample(8)     # Advance the RNG past its seed state.
        if prioritized:
            buffer.update_priorities(np.arange(5, 15), np.linspace(0.1, 3, 10))
        return buffer

    def continue_run(buffer):
        out = []
        for k in range(5):
            buffer.add(frame(200 + k, (4, 4)), 1, 1.0, terminal=k == 4)
            batch = buffer.sample(16)
            out.append(batch)
            if prioritized:
                buffer.update_priorities(batch["indices"],
                                         np.arange(16) * 0.1 + 0.1)
        return out

    original = build()
    state = original.state_dict()
    path = tmp_path / "replay"
    original.save(str(path))
    original.save(str(path))          # A second save replaces the first.
    saved = sorted(p for p in os.listdir(path) if p.endswith(".npy"))
    # One generation of files is left, one per array, and no temporary files.
    assert len({name.split(".")[1] for name in saved}) == 1
    assert [name.split(".")[0] for name in saved] == sorted(
        ["actions", "flags", "frames", "rewards"]
        + (["sum_tree"] if prioritized else []))
    assert not [p for p in os.listdir(path) if ".tmp" in p]
    expected = continue_run(original)

    from_state = BootstrapBuffer(30, frame_shape=(4, 4), stack_size=4,
                                   n_step=3, prioritized=prioritized, seed=123)
    from_state.load_state_dict(state)
    loaded = FrameReplayBuffer.load(str(path))
    restored = BootstrapBuffer(30, frame_shape=(4, 4), stack_size=4,
                                 n_step=3, prioritized=prioritized, seed=0)
    restored.restore(str(path))
    for other in (from_state, loaded, restored):
        assert len(other) == 30 and other.num_added == 45
        for want, got in zip(expected, continue_run(other)):
            assert want.keys() == got.keys()
            for key in want:
                np.testing.assert_array_equal(want[key], got[key], err_msg=key)


def test_load_state_dict_rejects_other_settings():
    buffer = BootstrapBuffer(30, frame_shape=(4, 4), n_step=3)
    other = BootstrapBuffer(30, frame_shape=(4, 4), n_step=1)
    with pytest.raises(ValueError, match="n_step: saved 3, buffer 1"):
        other.load_state_dict(buffer.state_dict())


# Written by the code before persistence moved to its own module (the
# buffer of _checkpoint_fixture_buffer, generation c7b22b554645).
_V1_CHECKPOINT = os.path.join(os.path.dirname(__file__), "data",
                              "replay_buffer_v1")


def _checkpoint_fixture_buffer():
    buffer = FrameReplayBuffer(30, frame_shape=(4, 4), stack_size=4, n_step=3,
                               prioritized=True, seed=9)
    frames, actions, rewards, terminals = synthetic_transitions(
        0, 45, (4, 4), np.uint8, episode_length=7)
    for k in range(45):
        buffer.add(frames[k], actions[k], rewards[k], terminals[k],
                   truncated=k == 40)
    buffer.sample(8)
    buffer.update_priorities(np.arange(5, 15), np.linspace(0.1, 3, 10))
    return buffer


def _assert_same_buffer(want, got):
    want_state, got_state = want.state_dict(), got.state_dict()
    for key in ("config", "counters", "rng_state"):
        assert want_state[key] == got_state[key], key
    for key in want_state["arrays"]:
        np.testing.assert_array_equal(want_state["arrays"][key],
                                      got_state["arrays"][key], err_msg=key)
    for want_batch, got_batch in ((want.sample(16), got.sample(16)),
                                  (want.sample(16), got.sample(16))):
        for key in want_batch:
            np.testing.assert_array_equal(want_batch[key], got_batch[key],
                                          err_msg=key)


def test_a_checkpoint_written_before_the_persistence_split_restores():
    _assert_same_buffer(_checkpoint_fixture_buffer(),
                        FrameReplayBuffer.load(_V1_CHECKPOINT))
    restored = FrameReplayBuffer(30, frame_shape=(4, 4), stack_size=4,
                                 n_step=3, prioritized=True, seed=0)
    restored.restore(_V1_CHECKPOINT)
    _assert_same_buffer(_checkpoint_fixture_buffer(), restored)


def _copy_with_manifest(tmp_path, edit):
    directory = tmp_path / "replay"
    shutil.copytree(_V1_CHECKPOINT, directory)
    manifest_path = directory / "replay_buffer.json"
    manifest = json.loads(manifest_path.read_text())
    edit(manifest)
    manifest_path.write_text(json.dumps(manifest))
    return str(directory)


def test_a_checkpoint_from_before_time_limit_cut_and_priority_at_write(
        tmp_path):
    def strip(manifest):
        del manifest["config"]["time_limit_cut"]
        del manifest["counters"]["priority_at_write"]
        manifest["counters"]["max_priority"] = 2.5

    directory = _copy_with_manifest(tmp_path, strip)
    loaded = FrameReplayBuffer.load(directory)
    # Those writers bootstrapped at cuts, and the pending slots enter the tree
    # at the largest priority seen.
    assert loaded.time_limit_cut == "bootstrap"
    counters = loaded.state_dict()["counters"]
    assert counters["priority_at_write"] == [2.5] * 4
    with pytest.raises(ValueError, match="time_limit_cut: saved 'bootstrap'"):
        _checkpoint_fixture_buffer().restore(directory)


def test_a_checkpoint_of_another_format_version_is_refused(tmp_path):
    def future(manifest):
        manifest["format_version"] = 2

    directory = _copy_with_manifest(tmp_path, future)
    with pytest.raises(ValueError, match="format_version 2; this code reads "
                                         "version 1"):
        FrameReplayBuffer.load(directory)
    with pytest.raises(ValueError, match="format_version 2"):
        _checkpoint_fixture_buffer().restore(directory)


def test_restore_from_an_empty_directory_says_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match="replay_buffer.json"):
        FrameReplayBuffer.load(str(tmp_path))


# --------------------------------------------------------------------------
# Memory.


def test_nbytes_counts_every_array_and_matches_the_layout():
    buffer = BootstrapBuffer(100, prioritized=True)
    arrays = [buffer._frames, buffer._actions, buffer._rewards, buffer._flags,
              buffer.sum_tree.nodes]
    assert buffer.nbytes() == sum(a.nbytes for a in arrays)
    assert buffer.nbytes() == FrameReplayBuffer.estimate_nbytes(
        100, prioritized=True)
    assert buffer.nbytes() == 100 * (84 * 84 + 4 + 4 + 1 + 16)


def _resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_million_slots_fit_7200_bytes_each_and_are_allocated_lazily():
    capacity = 1_000_000
    estimate = FrameReplayBuffer.estimate_nbytes(capacity, prioritized=True)
    assert estimate / capacity <= 7200
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("resident memory is read from /proc")
    before = _resident_bytes()
    try:
        buffer = BootstrapBuffer(capacity, prioritized=True)
    except MemoryError:
        pytest.skip("this machine refuses a 7 GB (lazily backed) allocation")
    per_transition = buffer.nbytes() / capacity
    assert per_transition <= 7200
    assert per_transition == pytest.approx(7056 + 4 + 4 + 1 + 16)
    for k in range(100):
        buffer.add(frame(k % 250, (84, 84)), 0, 0.0, terminal=False)
    # 7 GB were requested, but only the written pages became resident.
    assert _resident_bytes() - before < 200 * 2 ** 20


# --------------------------------------------------------------------------
# Abandoned episodes.


def test_truncate_open_episode_makes_the_last_frame_the_final_observation():
    buffer = BootstrapBuffer(20, frame_shape=(3, 3), stack_size=2, n_step=2,
                               gamma=0.5, seed=0)
    for k in range(3):
        buffer.add(frame(1 + k), 0, 1.0, terminal=False)
    assert buffer.truncate_open_episode()
    assert not buffer.truncate_open_episode()     # Nothing open any more.
    assert len(buffer) == 2
    for k in range(3):
        buffer.add(frame(10 + k), 0, 1.0, terminal=False)
    batch = buffer.get_transitions([0, 1])
    assert batch["reward"].tolist() == [1.5, 1.0]
    assert batch["discount"].tolist() == [0.25, 0.5]
    assert newest(batch["next_state"]).tolist() == [[2, 3], [2, 3]]
    assert newest(buffer.get_transitions([3])["state"]).tolist() == [[0, 10]]


# --------------------------------------------------------------------------
# Errors.


def test_sampling_too_early_reports_have_and_need():
    buffer = BootstrapBuffer(100, frame_shape=(3, 3), n_step=3)
    for k in range(6):
        buffer.add(frame(k), 0, 0.0, terminal=False)
    assert not buffer.can_sample(4)
    with pytest.raises(ValueError,
                       match=r"have 3 sampleable transitions, need 4"):
        buffer.sample(4)
    assert buffer.sample(3)["state"].shape == (3, 3, 3, 4)


def test_bad_frames_name_both_shapes_and_dtypes():
    buffer = BootstrapBuffer(100, frame_shape=(84, 84))
    with pytest.raises(ValueError, match=r"shape \(84, 84, 4\).*\(84, 84\)"):
        buffer.add(np.zeros((84, 84, 4), np.uint8), 0, 0.0, False)
    with pytest.raises(ValueError, match=r"dtype float32.*dtype uint8"):
        buffer.add(np.zeros((84, 84), np.float32), 0, 0.0, False)
    with pytest.raises(ValueError, match="next_frame has shape"):
        buffer.add(np.zeros((84, 84), np.uint8), 0, 0.0, False, truncated=True,
                   next_frame=np.zeros((42, 42), np.uint8))
    assert len(buffer) == 0


def test_other_bad_input_is_rejected_with_the_fix():
    buffer = BootstrapBuffer(100, frame_shape=(3, 3))
    good = frame(1)
    with pytest.raises(ValueError, match="truncated=True needs next_frame"):
        buffer.add(good, 0, 0.0, terminal=False, truncated=True)
    with pytest.raises(ValueError, match="only with terminal or truncated"):
        buffer.add(good, 0, 0.0, terminal=False, next_frame=good)
    with pytest.raises(ValueError, match="scalar integer"):
        buffer.add(good, 1.5, 0.0, terminal=False)
    with pytest.raises(ValueError, match="int32"):
        buffer.add(good, 2 ** 40, 0.0, terminal=False)
    with pytest.raises(ValueError, match="finite"):
        buffer.add(good, 0, np.nan, terminal=False)
    with pytest.raises(ValueError, match="prioritized=True"):
        buffer.update_priorities([0], [1.0])
    with pytest.raises(ValueError, match="too small"):
        BootstrapBuffer(5, stack_size=4, n_step=1)
    with pytest.raises(ValueError, match="gamma"):
        BootstrapBuffer(100, gamma=1.5)
    # A terminal step needs no next_frame, even when also truncated.
    buffer.add(good, 0, 0.0, terminal=True, truncated=True)
    prioritized = _prioritized_buffer()
    with pytest.raises(ValueError, match="one priority per index"):
        prioritized.update_priorities([0, 1], [1.0])
    with pytest.raises(ValueError, match=">= 0"):
        prioritized.update_priorities([0], [-1.0])
    with pytest.raises(ValueError, match="finite"):
        prioritized.update_priorities([0], [np.inf])
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        prioritized.update_priorities([64], [1.0])
    prioritized.update_priorities(np.arange(40), np.zeros(40))
    with pytest.raises(ValueError, match="priority 0"):
        prioritized.sample(4)


# --------------------------------------------------------------------------
# Interleaving the stack positions (OpenCV and NumPy paths).


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32, np.int64])
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_interleave_planes_paths_agree_with_moveaxis(dtype, depth):
    from tf_softmoe.replay.frame_replay import _cv2
    from tf_softmoe.replay.frame_replay import interleave_planes

    rng = np.random.default_rng(0)
    planes = rng.integers(0, 200, size=(depth, 5, 7, 6)).astype(dtype)
    want = np.moveaxis(planes, 0, -1)
    chosen = interleave_planes(planes)
    numpy_only = interleave_planes(planes, use_opencv=False)
    for got in (chosen, numpy_only):
        assert got.dtype == want.dtype and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)
    if _cv2() is not None and dtype != np.int64 and depth > 1:
        np.testing.assert_array_equal(
            interleave_planes(planes, use_opencv=True), want)


# --------------------------------------------------------------------------
# time_limit_cut="drop" (the default, Dopamine's behaviour).


def test_drop_is_the_default_and_a_cut_drops_the_last_n_step_transitions():
    buffer = FrameReplayBuffer(40, frame_shape=(3, 3), stack_size=2, n_step=3)
    assert buffer.time_limit_cut == "drop"
    for t in range(6):
        buffer.add(frame(t + 1), t, 1.0, False, truncated=t == 5)
    for t in range(5):
        buffer.add(frame(50 + t), t, 0.0, t == 4)
    # Episode one: slots 0..5, the last three (3, 4, 5) reach the cut.
    assert buffer.is_sampleable(np.arange(6)).tolist() == [
        True, True, True, False, False, False]
    batch = buffer.get_transitions(np.array([2]))
    assert newest(batch["next_state"]).tolist() == [[5, 6]]
    assert batch["discount"][0] == pytest.approx(0.99 ** 3)
    assert len(buffer) == 8


def test_drop_closes_an_abandoned_episode_like_a_cut():
    buffer = FrameReplayBuffer(40, frame_shape=(3, 3), stack_size=2, n_step=2)
    for t in range(5):
        buffer.add(frame(t + 1), t, 1.0, False)
    assert buffer.truncate_open_episode()
    for t in range(4):
        buffer.add(frame(60 + t), t, 0.0, t == 3)
    assert buffer.is_sampleable(np.arange(5)).tolist() == [
        True, True, True, False, False]
    assert newest(buffer.get_transitions(np.array([5]))["state"]).tolist() == [
        [0, 60]]


def test_drop_needs_no_final_frame_and_rejects_an_unknown_mode(tmp_path):
    buffer = FrameReplayBuffer(40, frame_shape=(3, 3), stack_size=2, n_step=1)
    buffer.add(frame(1), 0, 0.0, False)
    buffer.add(frame(2), 0, 0.0, False, truncated=True,
               next_frame=frame(3))  # ignored: nothing bootstraps from it
    assert buffer.num_added == 2 and len(buffer) == 1
    buffer.save(str(tmp_path))
    assert FrameReplayBuffer.load(str(tmp_path)).time_limit_cut == "drop"
    with pytest.raises(ValueError, match="time_limit_cut"):
        FrameReplayBuffer(40, frame_shape=(3, 3), time_limit_cut="ignore")
