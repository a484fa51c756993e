//! A small fixed catalog shared by the model's integration tests.

use kora_model::catalog::{NodeTypeInfo, ParamInfo};

pub(crate) fn catalog() -> Vec<NodeTypeInfo> {
    let t = |name: &'static str, params: Vec<ParamInfo>, outputs: Vec<&'static str>| NodeTypeInfo {
        name,
        description: "",
        params,
        outputs,
        open_inputs: false,
        open_outputs: false,
        stop_on_error: false,
        is_switch: false,
        required_one_of: Vec::new(),
    };
    let mut py = t(
        "PythonCodeNode",
        vec![ParamInfo::optional("code", "")],
        vec!["result"],
    );
    py.open_inputs = true;
    py.open_outputs = true;
    let mut sw = t(
        "SwitchNode",
        vec![
            ParamInfo::required("input_data", "").with_aliases(&["data"]),
            ParamInfo::optional("condition_field", ""),
            ParamInfo::optional("operator", ""),
            ParamInfo::optional("value", ""),
            ParamInfo::optional("cases", ""),
        ],
        vec!["true_output", "false_output", "condition_result", "default"],
    );
    sw.is_switch = true;
    sw.open_outputs = true;
    let mut sql = t(
        "SQLDatabaseNode",
        vec![ParamInfo::required("query", "")],
        vec!["result"],
    );
    sql.stop_on_error = true;
    vec![
        py,
        sw,
        sql,
        t(
            "NoOpNode",
            vec![ParamInfo::optional("data", "")],
            vec!["data"],
        ),
        t(
            "CSVReaderNode",
            vec![ParamInfo::required("file_path", "")],
            vec!["data"],
        ),
        t(
            "MergeNode",
            [
                "data1",
                "data2",
                "data3",
                "data4",
                "data5",
                "merge_type",
                "key",
                "skip_none",
            ]
            .into_iter()
            .map(|n| ParamInfo::optional(n, ""))
            .collect(),
            vec!["merged_data"],
        ),
    ]
}
