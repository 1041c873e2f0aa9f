"""What a caption says, as class labels: the text encoder learns to say it in its pooled output.

A text encoder trained only through the denoising loss hears "on the left" as noise for a long
time. Asking its end-of-text state to name each object's colour, shape, place and size (and
the background) first, and all along, gives the UNet a prompt embedding that already binds "red"
to "circle" and "circle" to "left". The heads are thrown away; only the encoder ships.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)

from demo_model.vocabulary import COLOURS, POSITION_PHRASES, SHAPES, SIZE_WORDS

# field -> its classes; class 0 of every field is "not said".
_UNSAID = "-"
FIELDS: dict[str, tuple[str, ...]] = {
    "count": ("0", "1", "2"),
    "background": (_UNSAID, *COLOURS),
    **{
        f"{name}{slot}": (_UNSAID, *classes)
        for slot in (0, 1)
        for name, classes in (
            ("colour", tuple(COLOURS)),
            ("shape", SHAPES),
            ("position", tuple(POSITION_PHRASES)),
            ("size", tuple(SIZE_WORDS)),
        )
    },
}


def labels(text: str) -> dict[str, str]:
    """What `text`, a training caption, says: field -> class."""
    said = dict.fromkeys(FIELDS, _UNSAID)
    objects_part, _, background = text.partition(" on a ")
    if background:
        said["background"] = background.split()[0]
    phrases = [p for p in objects_part.rstrip(",").split(" and ") if p]
    said["count"] = str(len(phrases))
    for slot, phrase in enumerate(phrases[:2]):
        words = phrase.split()
        for word in words:
            if word in COLOURS:
                said[f"colour{slot}"] = word
            elif word in SHAPES:
                said[f"shape{slot}"] = word
        for position, options in POSITION_PHRASES.items():
            if any(option in phrase for option in options):
                said[f"position{slot}"] = position
        for size, options in SIZE_WORDS.items():
            if any(option in words for option in options):
                said[f"size{slot}"] = size
    return said


def targets(texts: list[str]) -> torch.Tensor:
    """Class indices, (len(texts), len(FIELDS)), in FIELDS' order."""
    rows = []
    for text in texts:
        said = labels(text)
        rows.append([FIELDS[field].index(said[field]) for field in FIELDS])
    return torch.tensor(rows, dtype=torch.long)


class Heads(torch.nn.Module):
    """One linear classifier per field, on the text encoder's pooled output."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.heads = torch.nn.ModuleList(torch.nn.Linear(width, len(c)) for c in FIELDS.values())

    def loss(self, pooled: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
        """The summed cross-entropy over the fields."""
        return sum(
            F.cross_entropy(head(pooled), wanted[:, index]) for index, head in enumerate(self.heads)
        )

    def accuracy(self, pooled: torch.Tensor, wanted: torch.Tensor) -> float:
        """The share of fields told right, over the batch."""
        right = [
            (head(pooled).argmax(dim=1) == wanted[:, index]).float().mean()
            for index, head in enumerate(self.heads)
        ]
        return float(torch.stack(right).mean())


def pretrain_text(  # noqa: PLR0917 (the loop's inputs)
    text_encoder: Any, heads: Heads, tokenizer: Any, rng: Any, steps: int, log: Any
) -> None:
    """Teach the text encoder to say what captions say, before any image is involved."""
    from demo_model.data import captions, scenes, token_ids

    params = [*text_encoder.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.01)
    for step in range(steps):
        texts = captions(rng, scenes(rng, 256), 0.1)
        wanted = targets(texts)
        pooled = text_encoder(token_ids(tokenizer, texts)).pooler_output
        loss = heads.loss(pooled, wanted)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            log(
                f"text {step:4d}/{steps} loss {loss.item():.3f} "
                f"accuracy {heads.accuracy(pooled, wanted):.1%}"
            )
