"""Everything a bulk send is made of, testable without a DAG: plan, ledger, dispatcher, summary."""
