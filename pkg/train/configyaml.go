package train

import (
	"fmt"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

// duplicateKey matches go-yaml's error line for a key set twice in a map.
var duplicateKey = regexp.MustCompile(`line (\d+): key (".*") already set in map`)

// configToJSON converts a YAML (or JSON) config file to JSON, refusing a
// key given twice in one map — YAMLToJSON would keep the last silently —
// with an error naming each such key and its line.
func configToJSON(b []byte) ([]byte, error) {
	j, err := yaml.YAMLToJSONStrict(b)
	if err == nil {
		return j, nil
	}
	dups := duplicateKey.FindAllStringSubmatch(err.Error(), -1)
	if len(dups) == 0 {
		return nil, err
	}
	msgs := make([]string, len(dups))
	for i, d := range dups {
		msgs[i] = fmt.Sprintf("line %s: key %s given again (a key may appear once; remove one of them)", d[1], d[2])
	}
	return nil, fmt.Errorf("duplicate key: %s", strings.Join(msgs, "; "))
}
