"""The per-brand summary printed after a collection run."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from storage.repository import BrandSummary

_BAR_WIDTH = 20


def _bar(share: float) -> str:
    filled = round(share * _BAR_WIDTH)
    return "█" * filled + "·" * (_BAR_WIDTH - filled)


def _one_line(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def render_summary(summaries: Sequence[BrandSummary], *, competitors: Collection[str] = (), model: str = "") -> str:
    """Plain-text summary: mentions, share negative (with a bar) and the most negative posts."""
    if not summaries:
        return "No mentions stored yet. Check that sources are enabled and brands are configured."
    lines = [f"Sentiment by brand{f'  (model: {model})' if model else ''}", ""]
    width = max(len(s.brand) for s in summaries) + len(" (competitor)")
    for s in sorted(summaries, key=lambda s: (s.brand in competitors, -s.mentions)):
        name = s.brand + (" (competitor)" if s.brand in competitors else "")
        lines.append(
            f"{name:<{width}}  {s.mentions:>6} mentions  {_bar(s.share_negative)} "
            f"{s.share_negative:6.1%} negative  ({s.positive} positive, {s.neutral} neutral)"
        )
    for s in summaries:
        if not s.most_negative:
            continue
        lines += ["", f"Most negative about {s.brand}:"]
        for post in s.most_negative:
            when = post.created_at.strftime("%Y-%m-%d %H:%M")
            lines.append(
                f"  #{post.mention_id:<6} {post.negative:4.0%}  {when}  @{post.author} on {post.platform}: "
                f"{_one_line(post.text)}"
            )
            lines.append(f"{'':15}{post.url}")
    return "\n".join(lines)
