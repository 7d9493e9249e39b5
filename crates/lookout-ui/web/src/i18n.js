// UI chrome in Korean and English; dashboards carry their own (bilingual) titles.

const STRINGS = {
  en: {
    dashboards: 'Dashboards', explore: 'Explore', alerting: 'Alerting', targets: 'Targets', status: 'Status',
    tokens: 'API tokens', users: 'Users', logout: 'Sign out', login: 'Log in', username: 'Email or username',
    password: 'Password', welcome: 'Welcome to Lookout', changePassword: 'Change password',
    changePasswordHint: 'You are using the default password. Choose a new one to continue.',
    newPassword: 'New password', confirmPassword: 'Confirm new password', oldPassword: 'Old password',
    submit: 'Submit', search: 'Search dashboards', noData: 'No data', loading: 'Loading…',
    unsupported: 'Panel type not supported', refresh: 'Refresh', off: 'Off', from: 'From', to: 'To',
    apply: 'Apply time range', edit: 'Edit', save: 'Save', cancel: 'Cancel', addPanel: 'Add panel',
    remove: 'Remove', exportJson: 'Export JSON', importDash: 'Import', newDash: 'New dashboard',
    title: 'Title', type: 'Type', unit: 'Unit', query: 'Query', legend: 'Legend', addQuery: 'Add query',
    runQuery: 'Run query', history: 'Query history', graph: 'Graph', table: 'Table', logs: 'Logs',
    firing: 'Firing', pending: 'Pending', inactive: 'Normal', rules: 'Alert rules', activeAlerts: 'Active alerts',
    silenceHint: 'To silence, run', up: 'UP', down: 'DOWN', lastScrape: 'Last scrape', duration: 'Duration',
    error: 'Error', endpoint: 'Endpoint', labels: 'Labels', state: 'State', version: 'Version',
    storage: 'Storage', retention: 'Retention', config: 'Configuration', provisioning: 'Provisioning problems',
    none: 'None', serverDown: 'Lookout server is unreachable — retrying…', saved: 'Saved',
    readOnly: 'Provisioned dashboard (read-only)', create: 'Create', name: 'Name', role: 'Role',
    tokenOnce: 'Copy this token now; it is not shown again:', general: 'General', time: 'Time', value: 'Value',
    metrics: 'Metrics', mode: 'Mode', lines: 'lines', loadingFailed: 'Query failed', all: 'All',
    renderTime: 'rendered in', viewJson: 'JSON', language: 'Language', login_failed: 'Login failed',
    zoomHint: 'Drag on a graph to zoom', selectFile: 'or choose a file', panelJsonHint: 'Paste dashboard JSON',
  },
  ko: {
    dashboards: '대시보드', explore: '탐색', alerting: '알림', targets: '수집 대상', status: '상태',
    tokens: 'API 토큰', users: '사용자', logout: '로그아웃', login: '로그인', username: '이메일 또는 사용자 이름',
    password: '비밀번호', welcome: 'Lookout에 오신 것을 환영합니다', changePassword: '비밀번호 변경',
    changePasswordHint: '기본 비밀번호를 사용 중입니다. 계속하려면 새 비밀번호를 설정하세요.',
    newPassword: '새 비밀번호', confirmPassword: '새 비밀번호 확인', oldPassword: '현재 비밀번호',
    submit: '확인', search: '대시보드 검색', noData: '데이터 없음', loading: '불러오는 중…',
    unsupported: '지원하지 않는 패널 유형', refresh: '새로 고침', off: '끄기', from: '시작', to: '끝',
    apply: '시간 범위 적용', edit: '편집', save: '저장', cancel: '취소', addPanel: '패널 추가',
    remove: '삭제', exportJson: 'JSON 내보내기', importDash: '가져오기', newDash: '새 대시보드',
    title: '제목', type: '유형', unit: '단위', query: '쿼리', legend: '범례', addQuery: '쿼리 추가',
    runQuery: '쿼리 실행', history: '쿼리 기록', graph: '그래프', table: '표', logs: '로그',
    firing: '발생 중', pending: '대기', inactive: '정상', rules: '알림 규칙', activeAlerts: '활성 알림',
    silenceHint: '알림을 끄려면 실행', up: '정상', down: '중단', lastScrape: '마지막 수집', duration: '소요 시간',
    error: '오류', endpoint: '엔드포인트', labels: '라벨', state: '상태', version: '버전',
    storage: '저장소', retention: '보관 기간', config: '설정', provisioning: '프로비저닝 문제',
    none: '없음', serverDown: 'Lookout 서버에 연결할 수 없습니다 — 다시 시도하는 중…', saved: '저장됨',
    readOnly: '프로비저닝된 대시보드 (읽기 전용)', create: '만들기', name: '이름', role: '역할',
    tokenOnce: '이 토큰을 지금 복사하세요. 다시 표시되지 않습니다:', general: '일반', time: '시간', value: '값',
    metrics: '메트릭', mode: '모드', lines: '줄', loadingFailed: '쿼리 실패', all: '전체',
    renderTime: '렌더링 시간', viewJson: 'JSON', language: '언어', login_failed: '로그인 실패',
    zoomHint: '그래프를 드래그하여 확대', selectFile: '또는 파일 선택', panelJsonHint: '대시보드 JSON 붙여넣기',
  },
};

let lang = localStorage.getItem('lookout.lang') || ((navigator.language || '').startsWith('ko') ? 'ko' : 'en');

export function t(key) {
  return (STRINGS[lang] && STRINGS[lang][key]) || STRINGS.en[key] || key;
}

export function getLang() { return lang; }

export function setLang(l) {
  lang = STRINGS[l] ? l : 'en';
  localStorage.setItem('lookout.lang', lang);
  document.documentElement.lang = lang;
}
