"""Thin Streamlit helpers shared by the pages: the only package, besides `pages/`, that imports streamlit.

- `theme`: presentation mode (larger fonts for projectors) and how every chart is drawn and offered for download;
- `session`: the run store, the URL (configuration and run id), starting and watching jobs, picking runs;
- `config_form`: every `Config` field as a widget, presets, and the configuration they produce;
- `panels`: the data banner, the status line, the live charts of a run, and the download buttons.
"""
