"""cafe_cache: CAFE (ECCV 2024) generalizable FER on a frozen-CLIP feature cache.

Stage one (:mod:`cafe_cache.extract`) runs a frozen CLIP image tower once per dataset
and stores its features in HDF5.  Stage two (:mod:`cafe_cache.train`) trains the
ResNet mask branch of CAFE against those cached features.
"""

__version__ = "0.2.0"
