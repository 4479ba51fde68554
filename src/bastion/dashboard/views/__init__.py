"""The dashboard's pages (Streamlit). Imported only inside the dashboard process."""
