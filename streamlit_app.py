"""ResNet Explorer in the browser: `streamlit run streamlit_app.py` (routes to the pages; see explorer/ui/app.py)."""

from explorer.ui.app import main

main()
