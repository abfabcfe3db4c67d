"""A background thread that samples replay batches ahead of training.

Sampling a 32-batch from a 1 M Atari buffer copies ~1.8 MB of frames; doing it
on a second thread while the accelerator trains on the previous batch hides
that cost. NumPy releases the GIL for those copies and TensorFlow for its ops,
so the two really overlap.

Staleness: a batch waiting in the queue was drawn before the priority updates
of the training steps that ran meanwhile (at most ``depth`` steps when the
consumer takes one batch per step) and cannot contain transitions added after
it was drawn. ``depth=0`` is not allowed here; sample synchronously with
``buffer.sample`` instead when no staleness is wanted.
"""

import queue
import threading


class BatchPrefetcher:
    """Iterator of ``buffer.sample(batch_size)`` batches made on a thread.

    Use as a context manager (or call ``close``) so the thread stops:

        with BatchPrefetcher(buffer, 32, depth=2) as batches:
            for step in range(num_steps):
                batch = next(batches)
                ...
                buffer.update_priorities(batch["indices"], new_priorities)

    The buffer must be able to sample when the prefetcher starts; an error
    raised by ``sample`` on the thread is re-raised by the next ``next()``.

    Args:
        buffer: a ``FrameReplayBuffer`` (anything with ``sample(batch_size)``).
        batch_size: positive int.
        depth: how many batches to keep ready, >= 1.

    Raises:
        ValueError: if ``depth < 1`` or the buffer cannot sample a batch yet.
    """

    _POLL_SECONDS = 0.1

    def __init__(self, buffer, batch_size, depth=2):
        depth = int(depth)
        if depth < 1:
            raise ValueError(
                f"depth must be >= 1, got {depth}; for no prefetching call "
                f"buffer.sample() directly.")
        if hasattr(buffer, "can_sample") and not buffer.can_sample(batch_size):
            raise ValueError(
                f"The buffer cannot sample a batch of {batch_size} yet "
                f"({buffer.num_sampleable} sampleable); start the prefetcher "
                f"after the warm-up.")
        self._buffer = buffer
        self._batch_size = batch_size
        self._queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run,
                                        name="replay-prefetch", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                item = (True, self._buffer.sample(self._batch_size))
            except Exception as error:  # pylint: disable=broad-except
                # Handed to the consumer, which re-raises it.
                item = (False, error)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=self._POLL_SECONDS)
                    break
                except queue.Full:
                    continue
            if not item[0]:
                return

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            if self._stop.is_set():
                raise StopIteration
            try:
                ok, value = self._queue.get(timeout=self._POLL_SECONDS)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError(
                        "The replay prefetch thread stopped without a "
                        "batch.") from None
                continue
            if ok:
                return value
            self.close()
            raise value

    def close(self):
        """Stops the thread and drops the queued batches."""
        self._stop.set()
        self._thread.join()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False
