"""Split DeepSeek-R1 style output into reasoning and answer, incrementally.

R1's chat template ends the prompt with ``<｜Assistant｜><think>\\n``, so the output
usually has no opening tag: everything before ``</think>`` is reasoning. An opening
``<think>`` that the model emits itself (after optional whitespace) is dropped.
Tags may be split across stream chunks; the splitter holds back only the bytes that
could still become a tag. Output with no ``</think>`` at all is all reasoning.
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ReasoningSplitter:
    def __init__(self) -> None:
        self._state = "start"  # start -> reasoning -> answer
        self._pending = ""
        self._answer_started = False

    def feed(self, text: str) -> tuple[str, str]:
        """Take the next piece of output; return the (reasoning, answer) text now safe to emit."""
        self._pending += text
        reasoning = answer = ""
        if self._state == "start":
            head = self._pending.lstrip()
            if head.startswith(OPEN):
                self._pending = head[len(OPEN):]
                self._state = "reasoning"
            elif OPEN.startswith(head):
                return "", ""  # could still be an opening tag
            else:
                self._state = "reasoning"
        if self._state == "reasoning":
            end = self._pending.find(CLOSE)
            if end < 0:
                keep = _partial_suffix(self._pending, CLOSE)
                cut = len(self._pending) - keep
                reasoning, self._pending = self._pending[:cut], self._pending[cut:]
                return reasoning, ""
            reasoning, self._pending = self._pending[:end], self._pending[end + len(CLOSE):]
            self._state = "answer"
        if self._state == "answer":
            answer, self._pending = self._pending, ""
            if not self._answer_started:
                answer = answer.lstrip()
                self._answer_started = bool(answer)
        return reasoning, answer

    def finish(self) -> tuple[str, str]:
        """End of output: flush whatever was held back."""
        rest, self._pending = self._pending, ""
        if self._state == "answer":
            return "", rest if self._answer_started else rest.lstrip()
        return rest, ""


def split_reasoning(text: str) -> tuple[str, str]:
    """Non-streaming split: (reasoning, answer)."""
    splitter = ReasoningSplitter()
    r1, a1 = splitter.feed(text)
    r2, a2 = splitter.finish()
    return r1 + r2, a1 + a2
