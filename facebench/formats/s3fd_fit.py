"""Coefficients of the S3FD rectangle-to-ellipse regressor (FDDB), as package data.

From the S3FD authors' ``Fit.mat`` (sfzhang15/SFD @ c1abcf014d430354ce3a61c7f33de0dcf2021186,
``sfd_test_code/FDDB/fddb_from_rectangle_to_ellipse/Fit.mat``). Kept in Python rather
than a data file so every install has them.
``ellipse = (((rect - meanX) / stdX) @ w) * stdY + meanY`` with ``rect = (left, top,
width, height)`` and ``ellipse = (major, minor, angle, cx, cy)``; see
:func:`facebench.formats.fddb.rect_to_ellipse_s3fd`.
"""

from __future__ import annotations

S3FD_FIT: dict[str, tuple] = {
    "meanX": (
        156.13947113207567,
        78.39775792452856,
        84.9307705660378,
        116.11285056603776,
    ),
    "stdX": (
        100.31337737038085,
        59.30959113769878,
        44.33530840303798,
        62.01965783966178,
    ),
    "meanY": (
        70.91182604716998,
        46.730524315094264,
        -0.015393847152228928,
        198.48235230566007,
        127.66338751132064,
    ),
    "stdY": (
        37.423204711386845,
        24.51696221779392,
        0.13649423543132394,
        95.60608844483005,
        61.83186865999054,
    ),
    "w": (
        (
            -0.003862171631193956,
            0.0016854455194783846,
            0.0077220230540347165,
            1.0515471876438491,
            0.0025463690711075154,
        ),
        (
            0.012729383955874168,
            0.007767872530909853,
            0.018258502717953137,
            0.00030217424059183345,
            0.9543215362057318,
        ),
        (
            0.4295265489689868,
            0.7204314140371153,
            -0.31513805639435877,
            0.23821901112018695,
            -0.18104035028737098,
        ),
        (
            0.5657794635126479,
            0.2745314413142488,
            0.29616282710499914,
            -0.006104367985832582,
            0.6116753106252384,
        ),
    ),
}
