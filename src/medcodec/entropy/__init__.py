"""Entropy coding: integer symbols to bytes under discrete, exactly reproducible models.

Learned codecs fail in practice when encoder and decoder compute slightly different probability
tables (CompressAI issues 279/309). Here every probability the decoder uses comes from an integer
frequency table chosen by an integer index, so floating-point noise cannot desynchronise them.
"""

from medcodec.entropy.coder import GroupedCoder
from medcodec.entropy.tables import LaplaceTables

__all__ = ["GroupedCoder", "LaplaceTables"]
