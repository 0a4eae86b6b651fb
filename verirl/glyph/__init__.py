"""The glyph demo: a tiny SD3-style text-to-image pipeline trained from scratch on a CPU to draw short strings,
then improved with Flow-GRPO and an OCR reward (``verirl glyph pretrain``, ``recipes/glyph-flowgrpo.yaml``).

Everything here is our design (no paper prescribes it): a character-level CLIP tokenizer, two small CLIP text
encoders, a small ``SD3Transformer2DModel`` and ``AutoencoderKL``, trained with the rectified-flow objective SD3 uses,
on renders of digit strings. It exists so that every user can watch diffusion RL work without a GPU.
"""
