"""Images that arrive with a request: decoded safely, checked, and normalised for the pipelines.

Torch-free (Pillow only), so API processes in scale-out mode check uploads themselves. Every
failure is an ImageInputError whose message speaks of the client's image, never of Pillow.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

# An upload may be larger than the image drawn (a phone photo edited at 1024x1024): up to this
# many times MAX_PIXELS is decoded, then resized. Beyond it, the header alone refuses it.
INPUT_PIXELS_FACTOR = 16
# A1111's resize_mode: 0 just resize, 1 crop and resize, 2 resize and fill, 3 latent upscale.
RESIZE_MODES = ("resize", "crop", "fill", "latent")
_DATA_URL = re.compile(r"^data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)


class ImageInputError(ValueError):
    """An uploaded image cannot be used; the message says why, in the client's terms."""


def input_pixel_limit(max_pixels: int) -> int:
    """The largest upload, in pixels, for a server whose MAX_PIXELS is `max_pixels`."""
    return max_pixels * INPUT_PIXELS_FACTOR


def from_base64(text: str) -> bytes:
    """The bytes of a base64 image, with or without a `data:image/...;base64,` prefix."""
    text = _DATA_URL.sub("", text.strip(), count=1)
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ImageInputError("It is not valid base64.") from None


def read_image(data: bytes, max_pixels: int) -> Image.Image:
    """The decoded image, EXIF rotation applied, in RGB or RGBA (transparency kept).

    Its size is checked from the header before any pixel is decoded: a decompression bomb is
    refused for what it claims, not after it filled the memory.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise ImageInputError("It is empty.")
    limit = input_pixel_limit(max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > limit:
                raise ImageInputError(
                    f"It is {width}x{height}, {width * height} pixels: more than the "
                    f"{limit} this server decodes."
                )
            image.load()
            image = ImageOps.exif_transpose(image)
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError(
            f"It claims more than the {limit} pixels this server decodes."
        ) from None
    except UnidentifiedImageError:
        raise ImageInputError("It is not an image in a format this server reads.") from None
    except (OSError, SyntaxError, ValueError, EOFError):  # truncated or corrupt data
        raise ImageInputError(
            "It could not be decoded: the file is truncated or corrupt."
        ) from None
    return _as_rgb_or_rgba(image)


def _as_rgb_or_rgba(image: Image.Image) -> Image.Image:
    """CMYK, 16-bit, greyscale and palette images as 8-bit RGB; transparency as RGBA."""
    from PIL import Image

    if image.mode in ("RGB", "RGBA"):
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits instead of clipping everything above 255 to white.
        image = image.point(lambda value: value / 256).convert("L")
    elif image.mode == "F":
        image = image.convert("L")
    transparent = "A" in image.getbands() or "transparency" in image.info
    converted = image.convert("RGBA" if transparent else "RGB")
    assert isinstance(converted, Image.Image)
    return converted


def flatten(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """RGB, with any transparency composited over `background`."""
    from PIL import Image

    if image.mode != "RGBA":
        return image.convert("RGB")
    canvas = Image.new("RGB", image.size, background)
    canvas.paste(image, mask=image.getchannel("A"))
    return canvas


def default_size(image: Image.Image, multiple: int, max_pixels: int) -> tuple[int, int]:
    """The size to draw when a request names none: the image's own, rounded down to
    `multiple` and scaled down (aspect kept) to fit `max_pixels`."""
    width, height = image.size
    scale = min(1.0, (max_pixels / (width * height)) ** 0.5)
    width = max(multiple, int(width * scale) // multiple * multiple)
    height = max(multiple, int(height * scale) // multiple * multiple)
    return width, height


def fit(image: Image.Image, width: int, height: int, mode: str = "resize") -> Image.Image:
    """`image` at exactly width x height, the way A1111's resize modes do it (RESIZE_MODES)."""
    from PIL import Image, ImageOps

    if image.size == (width, height):
        return image
    if mode == "crop":  # fill the frame, cut what sticks out (centred)
        return ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)
    if mode == "fill":  # fit inside, pad with the image's own edges stretched outwards
        inner = ImageOps.contain(image, (width, height), Image.Resampling.LANCZOS)
        canvas = image.resize((width, height), Image.Resampling.LANCZOS)
        canvas.paste(inner, ((width - inner.width) // 2, (height - inner.height) // 2))
        return canvas
    return image.resize((width, height), Image.Resampling.LANCZOS)  # resize, latent


def to_png(image: Image.Image) -> bytes:
    """Lossless bytes of `image`, as ImageInput carries them."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # speed over size: it lives in memory
    return buffer.getvalue()


def make_mask(
    image: Image.Image,
    width: int,
    height: int,
    *,
    from_alpha: bool = False,
    invert: bool = False,
    blur: int = 0,
) -> bytes:
    """The mask as ImageInput carries it (mode L, white = repaint, width x height, blurred).

    `from_alpha`: OpenAI's convention, where fully transparent pixels are the ones to paint.
    A mask of another size than the image is resized to it (as A1111 does). An all-black mask
    (nothing to repaint) is refused: the client surely meant something else.
    """
    from PIL import Image, ImageFilter

    if from_alpha:
        if image.mode != "RGBA":
            raise ImageInputError(
                "It has no transparency: the mask's fully transparent pixels mark where to paint."
            )
        mask = image.getchannel("A").point(lambda alpha: 255 if alpha == 0 else 0)
    else:
        mask = flatten(image, (0, 0, 0)).convert("L")
    if invert:
        mask = mask.point(lambda value: 255 - value)
    mask = mask.resize((width, height), Image.Resampling.LANCZOS)
    if blur > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    if mask.getextrema()[1] == 0:
        raise ImageInputError("It is all black: it marks nothing to repaint (white = repaint).")
    return to_png(mask)
