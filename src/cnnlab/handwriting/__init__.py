"""Photos and scans of handwriting -> what an MNIST network saw in training.

    digit     one digit: the ink found under any light, cut out, sized and centred as MNIST's
    segment   a written number's ink -> one mask per digit
    judge     a small network that scores how much a piece looks like one whole digit
    number    a written number -> one 28x28 image per digit, left to right
"""
