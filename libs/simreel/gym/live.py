"""What a ui can ask of a running RecordVideo, and what the recorder tells it back.

Requests (CaptureControlRequested, KeepRuleRequested on the recorder's subjects) arrive in the
recorder's thread and wait in a queue; the env's thread applies them only between episodes, so a
training loop without a ui pays nothing per step. The recorder announces itself (RecorderAnnounced)
at each episode boundary with what is in force, answers each request it applies, and dead-letters
those it cannot apply with the reason.
"""
from __future__ import annotations

import collections
import contextlib
from typing import Any

from simreel.capture import CaptureState, Trigger
from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.contract.keep import describe as describe_keep
from simreel.gym.clips import ClipStream
from simreel.recorder import RecorderError, RecorderThread


class LiveControl:
    """The live side of one recorder (`recorder_id`): its capture state and its pending requests."""

    def __init__(self, recorder: RecorderThread, *, recorder_id: str, session: str, env_id: str, trigger_text: str,
                 announce: bool, logger: Any) -> None:
        self.recorder = recorder
        self.recorder_id = recorder_id
        self.session = session
        self.env_id = env_id
        self.trigger_text = trigger_text
        self.announce_enabled = announce
        self.log = logger
        self.capture = CaptureState()
        self._requests: collections.deque[ev.Event] = collections.deque()

    def listen(self) -> None:
        """Subscribe to the recorder's control and keep subjects (before the recorder starts)."""
        if self.announce_enabled:
            self.recorder.subscribe(subjects.recorder_control(self.recorder_id), self._requests.append)
            self.recorder.subscribe(subjects.recorder_keep(self.recorder_id), self._requests.append)

    @property
    def pending(self) -> tuple[ev.Event, ...]:
        """Requests received and not applied yet (they apply at the next episode boundary)."""
        return tuple(self._requests)

    def apply(self, episode: int, clips: ClipStream, whole_episodes: bool) -> None:
        """Apply every pending request at the start of `episode`. `whole_episodes`: whether the
        recorder records whole episodes (keep rules need them)."""
        while self._requests:
            c = self._requests.popleft()
            if isinstance(c, ev.KeepRuleRequested):
                self._apply_keep(c, episode, clips, whole_episodes)
            elif isinstance(c, ev.CaptureControlRequested):
                self._apply_capture(c, episode)

    def _apply_capture(self, c: ev.CaptureControlRequested, episode: int) -> None:
        if c.action == "every" and c.every is None:
            self._refuse(c, subjects.recorder_control(self.recorder_id),
                         'action "every" needs a number: {"action": "every", "every": N}')
            return
        self.capture.apply(c.action, c.every, episode)
        self.recorder.publish(ev.CaptureControlApplied(
            event_id=f"applied-{self.recorder_id}-{c.event_id}"[:200], run_id=self.recorder_id,
            request_event_id=c.event_id, action=c.action, every=c.every, episode=episode))
        self.log.info("capture_control_applied", recorder_id=self.recorder_id, action=c.action, every=c.every,
                      episode=episode)

    def _apply_keep(self, c: ev.KeepRuleRequested, episode: int, clips: ClipStream, whole_episodes: bool) -> None:
        """Another keep rule from this episode on; candidates the old rule still holds are decided by it."""
        if not whole_episodes:
            self._refuse(c, subjects.recorder_keep(self.recorder_id),
                         "keep rules decide on whole episodes; this recorder records step_trigger / video_length clips")
            return
        with contextlib.suppress(RecorderError):  # the recorder failed: close() reports it with the runs
            clips.change_keep(c.keep)
        rule = describe_keep(c.keep) if c.keep is not None else ""
        self.recorder.publish(ev.KeepRuleApplied(
            event_id=f"keepapplied-{self.recorder_id}-{c.event_id}"[:200], run_id=self.recorder_id,
            request_event_id=c.event_id, rule=rule, episode=episode))
        self.log.info("keep_rule_applied", recorder_id=self.recorder_id, rule=rule, episode=episode)

    def _refuse(self, c: ev.Event, subject: str, reason: str) -> None:
        """A request this recorder cannot apply, dead-lettered with the reason (the ui shows it)."""
        self.recorder.publish(ev.DeadLettered.of(
            f"recorder-{c.event_id}"[:61], run_id=self.recorder_id, service="recorder", subject=subject,
            reason=reason, payload=ev.encode(c), preview_bytes=500))

    def announce(self, state: str, *, episodes_seen: int, videos_recorded: int, keep: Any,
                 episode_trigger: Trigger) -> None:
        """RecorderAnnounced: what this recorder does now ("running") or that it has closed."""
        if not self.announce_enabled:
            return
        seen = episodes_seen
        self.recorder.publish(ev.RecorderAnnounced(
            event_id=f"announced-{self.recorder_id}-{seen}-{state}", run_id=self.recorder_id,
            session=self.session, env_id=self.env_id,
            trigger=(self.capture.describe(self.trigger_text)
                     + (f"; keep {describe_keep(keep)}" if keep is not None else ""))[:200],
            episodes_seen=max(0, seen),
            videos_recorded=videos_recorded, state=state, cadence=self.capture.every,
            recording_next=state == "running" and self.capture.peek(seen, episode_trigger)))
