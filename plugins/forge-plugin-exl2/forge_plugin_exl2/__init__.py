"""EXL2 mixed bit-width quantization (``forge quantize --method exl2``) and its loader."""
