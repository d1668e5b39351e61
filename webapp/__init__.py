"""The local web app (python app.py): jobs.py derains uploaded files without gradio, page.py is the page.

The top layer beside the scripts: it may import utils, models and evaluations, and nothing imports it.
"""
