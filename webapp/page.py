"""The web page (gradio Blocks) around webapp.jobs: upload, choose weights, Derain, before/after, download.

Nothing is fetched from the internet: analytics, gradio's version check and Hugging Face telemetry are
off (set below, before gradio is imported), there is no share link, no server-side rendering, and the
theme's fonts come with gradio, so the page asks only this server (tests/test_app.py checks both sides).
"""
import os

# gradio and huggingface_hub read these when they are imported
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402

from webapp.jobs import Deraining, InputError, Upload  # noqa: E402

MAX_UPLOAD = "200mb"  # any image within MAX_PIXELS, even 16-bit RGBA uncompressed (134 MB)
QUEUE_SIZE = 16  # jobs waiting beyond the running one; more are refused with gradio's "queue is full"


def message(text: str) -> gr.Error:
    """An error for the person at the page: shown until closed, logged in one line, no traceback."""
    print(f"refused: {text}", file=sys.stderr, flush=True)
    return gr.Error(text, duration=None, print_exception=False)


def upload(file: dict | None) -> Upload | None:
    """gradio's FileData of an uploaded file (the event has preprocess=False), or None for no file."""
    if not file or not file.get("path"):
        return None
    return Upload(Path(file["path"]), file.get("orig_name") or Path(file["path"]).name)


def build_page(deraining: Deraining) -> gr.Blocks:
    """The page, its queue set to one job at a time."""
    with gr.Blocks(title="NeRD-Rain", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown("# NeRD-Rain: remove rain from a photo\nThe result is what `test.py` writes for the "
                    "same image and weights: full resolution, PNG.")
        with gr.Row():
            weights = gr.Dropdown(choices=list(deraining.choices.items()), label="Weights", elem_id="weights",
                                  value=next(iter(deraining.choices.values())))
            run = gr.Button("Derain", variant="primary", elem_id="run")
        with gr.Row():
            # filepath + image_mode=None + preprocess=False below: the handler gets the file as uploaded
            # (gr.Image's own preprocessing opens it with PIL and re-saves it)
            source = gr.Image(label="Rainy image", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                              elem_id="input-image")
            # a path to our PNG, served byte for byte (an array would be encoded as lossy webp)
            result = gr.Image(label="Derained (PNG, full resolution)", type="filepath", format="png",
                              interactive=False, buttons=["download", "fullscreen"], elem_id="output-image")
        compare = gr.ImageSlider(label="Before / after", type="filepath", format="png", interactive=False,
                                 elem_id="compare")
        with gr.Row():
            download = gr.DownloadButton("Download PNG", interactive=False, elem_id="download")
            summary = gr.Markdown(elem_id="summary")
        with gr.Accordion("Score against a clean target (optional)", open=False):
            with gr.Row():
                target = gr.Image(label="Clean target", type="filepath", image_mode=None, sources=["upload"],
                                  elem_id="target-image")
                protocol = gr.Radio(["A", "B"], value="A", label="Protocol (A: Rain200L/H, SPA-Data; "
                                    "B: DID-Data, DDN-Data)", elem_id="protocol")
            scores = gr.Markdown(elem_id="scores")

        def derain(image: dict | None, weights_file: str, target_file: dict | None, protocol_name: str,
                   progress=gr.Progress()) -> tuple:
            rainy = upload(image)
            if rainy is None:
                raise message("Upload an image first.")
            try:
                job = deraining(rainy, weights_file, upload(target_file), protocol_name,
                                lambda count, total: progress((count, total), desc="Deraining", unit="windows"))
            except InputError as err:
                raise message(str(err)) from None
            score_line = "" if job.scores is None else (
                f"PSNR **{job.scores[0]:.4f}** dB, SSIM **{job.scores[1]:.4f}** (protocol {protocol_name})")
            return (str(job.output_png), (str(job.input_png), str(job.output_png)),
                    gr.DownloadButton(value=str(job.output_png), interactive=True), job.summary, score_line)

        run.click(derain, inputs=[source, weights, target, protocol], outputs=[result, compare, download, summary,
                  scores], preprocess=False, concurrency_limit=1, concurrency_id="derain", api_name="derain")
        # A new input or target clears the old result, in the browser (js, no server round trip that
        # could land after the next result)
        for changed in (source, target):
            changed.change(None, None, [result, compare, download, summary, scores],
                           js="() => [null, null, null, '', '']")
    page.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    return page


def serve(page: gr.Blocks, host: str, port: int) -> None:
    """Serves the page until Ctrl-C (or SIGTERM, where the caller maps it to Ctrl-C)."""
    page.launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=True,
                max_file_size=MAX_UPLOAD, ssr_mode=False, pwa=False, mcp_server=False, run_history=False,
                footer_links=[])
