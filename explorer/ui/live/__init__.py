"""Live views that cost the server almost nothing per viewer.

A run's worker writes rows to the store about once a second. `feed` reads them once per server process for all
viewers, builds each chart once per change and keeps what each viewer already holds, so a poll is answered with
cached bytes holding only the new points; `api` serves those polls (and the classroom's tally and votes) as plain
HTTP routes of the app (`st.App`), long-polled, with no Streamlit script rerun per viewer; `element` is the browser
side, a components-v2 element (no iframe) that draws with plotly.js and extends the charts it holds.
"""
