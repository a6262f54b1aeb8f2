"""TrainerLink's result probe: a get_result request a respawned trainer never received
(sent before its result service was matched) expires, so the next probe can go out."""

from __future__ import annotations

from rclpy.task import Future

from mbrl_ros.nodes.trainer_link import ResultProbe


def test_an_unanswered_probe_expires_and_the_next_one_goes_out():
    probe = ResultProbe(now=0.0, every_s=1.0, expires_s=2.0)
    assert not probe.due(0.5) and probe.due(1.01)
    lost = Future()
    probe.sent(lost, 1.01)
    for now in (1.5, 2.5, 3.0):  # out and not yet expired: no second probe meanwhile
        probe.expire(now)
        assert probe.future is lost and not probe.due(now)
    probe.expire(3.02)
    assert lost.cancelled() and probe.future is None and probe.due(3.02)


def test_an_answered_probe_is_kept_for_the_caller_and_a_skipped_check_waits_its_turn():
    probe = ResultProbe(now=0.0, every_s=1.0, expires_s=2.0)
    answered = Future()
    probe.sent(answered, 1.5)
    answered.set_result("unknown goal")
    probe.expire(10.0)  # answered long ago: never cancelled, the caller reads it
    assert probe.future is answered and not answered.cancelled()
    probe.sent(None, 10.0)  # the trainer was training: nothing asked, ask again in 1 s
    assert not probe.due(10.5) and probe.due(11.01)
