"""The pictures: every figure of the demo, and the page to explore a model in a browser.

    plots.py        one function per figure, from arrays to a PNG
    figures.py      from trained models to those arrays (what demo.py draws)
    explore.py      one self-contained HTML page (explorer.html) with the model inside
"""
